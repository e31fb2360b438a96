// Command soak drives the compose stack (make up, with RATE_LIMIT=0) with a
// steady cycle of customer commands, create, update and delete, so that few
// customers live while their events pile up, at a fixed rate for a while.
// Every minute it reports Redis's memory, the containers' restarts, crm's
// lag and the archive's rows; at the end it checks that every command was
// answered, waits for the archive to hold every event appended, and runs
// -verify. It prints what it saw as Markdown, for docs/BENCHMARKS.md.
//
//	go run ./bench/soak -rate 2800 -for 10m
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	gateway := flag.String("gateway", "http://127.0.0.1:5000", "the gateway's API")
	rate := flag.Float64("rate", 1000, "commands a second")
	span := flag.Duration("for", 10*time.Minute, "how long")
	every := flag.Duration("every", time.Minute, "how often to report")
	workers := flag.Int("workers", 64, "customers in their cycle at once")
	flag.Parse()
	if err := soak(*gateway, *rate, *span, *every, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// counts are the answers of the commands by status; 0 is no answer.
type counts struct {
	mu sync.Mutex
	by map[int]int
}

func (c *counts) add(status int) {
	c.mu.Lock()
	c.by[status]++
	c.mu.Unlock()
}

func soak(gateway string, rate float64, span, every time.Duration, workers int) error {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	answers := &counts{by: map[int]int{}}
	var sent atomic.Int64
	// The ticks: command i is due at start + i/rate, until span has passed.
	// A tick no client was free for is dropped, not sent later in a burst:
	// the stack's answer to a rate above what it takes is fewer commands,
	// which the report shows.
	due := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(due)
		for i := 0; time.Since(start) < span; i++ {
			time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
			select {
			case due <- struct{}{}:
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cycle(client, gateway, w, due, answers, &sent)
		}()
	}
	fmt.Printf("Soak: %.0f commands/s for %v (customers created, updated, deleted by %d clients at once), through %s\n\n",
		rate, span, workers, gateway)
	fmt.Println("| minute | commands | Redis used_memory | restarts | crm lag | archive lag | archive rows | events appended |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	report := func(at time.Duration) {
		used, _ := redisInfo("memory", "used_memory_human")
		fmt.Printf("| %.0f | %d | %s | %d | %d | %d | %d | %d |\n", at.Minutes(), sent.Load(), used, restarts(),
			groupLag("customer", "crm"), archiveLag(), archiveRows(), appended())
	}
	report(0)
	tick := time.NewTicker(every)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-tick.C:
			report(time.Since(start))
		case <-done:
			running = false
		}
	}
	tick.Stop()
	report(time.Since(start))
	fmt.Printf("\nAnswers by status (0: none): %v\n", answers.by)
	// The archive catches up with what was appended, and the shop goes quiet
	// for -verify: msg still forgets the mails of the last MAIL_RETENTION,
	// an event each, for a while after the last command.
	want, deadline := appended(), time.Now().Add(5*time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(30 * time.Second)
		now := appended()
		if now == want && archiveRows() >= want {
			break
		}
		want = now
	}
	fmt.Printf("Archive rows %d, events appended %d, quiet after %v\n", archiveRows(), want, time.Since(start).Round(time.Second))
	out, err := verify()
	fmt.Printf("gateway -verify: %s\n", strings.TrimSpace(lastLine(out)))
	if answers.by[0] > 0 {
		return fmt.Errorf("%d commands got no answer", answers.by[0])
	}
	return err
}

// cycle creates a customer, updates it and deletes it, again and again, a
// command a tick, until the ticks end.
func cycle(client *http.Client, gateway string, w int, due <-chan struct{}, answers *counts, sent *atomic.Int64) {
	id := ""
	for n := 0; ; n++ {
		if _, ok := <-due; !ok {
			return
		}
		sent.Add(1)
		body := fmt.Sprintf(`{"name":"Soak %d","email":"soak-%d-%d@example.com"}`, n, w, n)
		switch {
		case id == "":
			var ids []string
			if status := call(client, "POST", gateway+"/customers", body, &ids); status == http.StatusOK && len(ids) == 1 {
				id = ids[0]
			} else {
				answers.add(status)
				continue
			}
			answers.add(http.StatusOK)
		case n%3 == 1:
			answers.add(call(client, "PUT", gateway+"/customer/"+id, body, nil))
		default:
			answers.add(call(client, "DELETE", gateway+"/customer/"+id, "", nil))
			id = ""
		}
	}
}

// call sends a command and answers its status, 0 when none came.
func call(client *http.Client, method, url, body string, out any) int {
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		return 0
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// compose runs scripts/compose.sh with args and answers its output.
func compose(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "scripts/compose.sh", args...).Output()
	return string(out), err
}

// redisCLI runs redis-cli in the Redis container as ops, raw output.
func redisCLI(args ...string) []string {
	out, _ := compose(append([]string{"exec", "-T", "redis", "redis-cli", "--user", "ops", "--no-auth-warning", "--raw"}, args...)...)
	return strings.Fields(out)
}

// redisInfo is a field of a section of INFO.
func redisInfo(section, field string) (string, bool) {
	for _, f := range redisCLI("INFO", section) {
		if v, ok := strings.CutPrefix(f, field+":"); ok {
			return v, true
		}
	}
	return "", false
}

// streams are the event streams, dead letters not.
func streams() []string {
	var out []string
	for _, k := range redisCLI("--scan", "--pattern", "events:*") {
		if !strings.Contains(k, ":dead:") {
			out = append(out, k)
		}
	}
	return out
}

// field is the value after name in a raw XINFO reply.
func field(reply []string, name string) int64 {
	for i := 0; i+1 < len(reply); i++ {
		if reply[i] == name {
			n, _ := strconv.ParseInt(reply[i+1], 10, 64)
			return n
		}
	}
	return 0
}

// appended is how many entries were ever added to the event streams.
func appended() int64 {
	var n int64
	for _, s := range streams() {
		n += field(redisCLI("XINFO", "STREAM", s), "entries-added")
	}
	return n
}

// groupLag is the lag of a group on the streams of an entity type.
func groupLag(typ, group string) int64 {
	var n int64
	for _, s := range streams() {
		if s != "events:{"+typ+"}" && !strings.HasPrefix(s, "events:{"+typ+":") {
			continue
		}
		reply := redisCLI("XINFO", "GROUPS", s)
		for i := 0; i+1 < len(reply); i++ {
			if reply[i] == "name" && reply[i+1] == group {
				n += field(reply[i:], "lag")
				break
			}
		}
	}
	return n
}

// archiveLag is the lag of the archive's group on every stream.
func archiveLag() int64 {
	var n int64
	for _, s := range streams() {
		reply := redisCLI("XINFO", "GROUPS", s)
		for i := 0; i+1 < len(reply); i++ {
			if reply[i] == "name" && reply[i+1] == "archive" {
				n += field(reply[i:], "lag")
				break
			}
		}
	}
	return n
}

// archiveRows is how many events the archive holds.
func archiveRows() int64 {
	out, _ := compose("exec", "-T", "postgres", "psql", "-U", "ordershop", "-d", "ordershop", "-tAc", "SELECT count(*) FROM events")
	n, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	return n
}

// restarts is how many times the stack's containers were restarted.
func restarts() int {
	ids, _ := compose("ps", "-q")
	n := 0
	for _, id := range strings.Fields(ids) {
		out, _ := exec.Command("docker", "inspect", "-f", "{{.RestartCount}}", id).Output()
		c, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		n += c
	}
	return n
}

// verify runs gateway -verify as ops, as the README says.
func verify() (string, error) {
	env, err := os.ReadFile(".env")
	if err != nil {
		return "", err
	}
	pw := ""
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(line, "REDIS_PASSWORD_OPS="); ok {
			pw = v
		}
	}
	// GOMEMLIMIT: the services run with GOGC=400, at which a long history's
	// garbage outgrows the container's 256 MB before it is collected.
	return compose("run", "--rm", "--no-deps", "-e", "REDIS_URL=redis://ops:"+pw+"@redis:6379/0",
		"-e", "GOMEMLIMIT=192MiB", "gateway", "-verify")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
