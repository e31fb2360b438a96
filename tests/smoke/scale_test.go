package smoke

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/tests/scenario"
)

// With --scale crm=3 each replica is a consumer of its own in group crm (its
// hostname, the container id); one replica is SIGKILLed while it holds
// entries, amid a burst of customers, and still every customer gets one
// welcome mail: the other replicas claim what it held after CLAIM_IDLE (3s in
// scale.yml) and the mail keys keep a mail from going out twice. With
// --scale customer=2 the gateway's calls reach both customer replicas.
func TestScaledCRMDeliversEveryWelcomeOnceWithAReplicaKilled(t *testing.T) {
	eachCompose(t, "scale", stack{files: []string{"tests/smoke/scale.yml"}}, func(t *testing.T, s stack) {
		s.run(t, "up", "-d", "--no-build", "--scale", "crm=3", "--scale", "customer=2")
		s.waitHealthy(t, 14) // Redis, PostgreSQL, nine services, two more crm, one more customer
		replicas := s.containers(t, "crm")
		redis := s.containers(t, "redis")
		if len(replicas) != 3 || len(redis) != 1 {
			t.Fatalf("crm replicas %v, redis %v", replicas, redis)
		}
		slices.Sort(replicas)
		consumers := func() map[string]int { return groupConsumers(t, redis[0], "events:{customer}", "crm") }
		// The burst: four clients post a list of 10 customers every 80ms each
		// (500 customers a second, faster than the checks below could follow
		// unpaced), until 40 lists after the kill; at most 300 lists each.
		gateway := "http://127.0.0.1:" + envOr("GATEWAY_PORT", "5000")
		var mu sync.Mutex
		var emails []string
		var errs []error
		var posted atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				tick := time.NewTicker(80 * time.Millisecond)
				defer tick.Stop()
				for i := 0; i < 300; i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					e, err := postCustomers(gateway, fmt.Sprintf("scale-%d-%d", w, i), 10)
					mu.Lock()
					emails, errs = append(emails, e...), append(errs, err)
					mu.Unlock()
					posted.Add(1)
				}
			})
		}

		// Amid it, every replica reads as a consumer of its own, and the first
		// one seen holding entries is killed. (Redis 7.0, unlike 7.2, does not
		// count a blocked read that got nothing as activity: the others remove a
		// replica that waited on a quiet stream for 2×CLAIM_IDLE from the group,
		// until it reads again. Hence the look amid the burst.)
		redistest.Eventually(t, 30*time.Second, "the three replicas, by hostname, in group crm", func() bool {
			return slices.Equal(slices.Sorted(maps.Keys(consumers())), replicas)
		})
		var killed string
		redistest.Eventually(t, time.Minute, "a crm replica holding pending entries", func() bool {
			for name, pending := range consumers() {
				if pending > 0 && slices.Contains(replicas, name) {
					docker(t, "kill", "-s", "KILL", name)
					killed = name
					t.Logf("killed %s holding %d pending entries, after %d lists", name, pending, posted.Load())
					return true
				}
			}
			return false
		})
		after := posted.Load()
		redistest.Eventually(t, time.Minute, "40 more lists posted", func() bool { return posted.Load() >= after+40 })
		close(stop)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(emails) != 10*int(posted.Load()) {
			t.Fatalf("%d customers created in %d lists of 10", len(emails), posted.Load())
		}
		// The gateway spreads its connections over the customer replicas.
		for _, id := range s.containers(t, "customer") {
			if n := strings.Count(docker(t, "logs", id), `"route":"/customers"`); n == 0 {
				t.Errorf("customer replica %s got none of the %d lists", id, posted.Load())
			} else {
				t.Logf("customer replica %s: %d lists", id, n)
			}
		}
		start := time.Now()
		scenario.Gateway(gateway).WaitMails(t, 2*time.Minute, "Welcome", emails)
		t.Logf("%d welcome mails, each once, %v after the burst", len(emails), time.Since(start).Round(time.Second))
		redistest.Eventually(t, 30*time.Second, "nothing pending in group crm", func() bool {
			for _, pending := range consumers() {
				if pending > 0 {
					return false
				}
			}
			return true
		})
		t.Logf("group crm on events:{customer}: %v; the killed %s: %s", consumers(), killed,
			docker(t, "inspect", "-f", "{{.State.Status}}, restarted {{.RestartCount}} times", killed))
	})
}

// groupConsumers answers XINFO CONSUMERS of a group, name to pending count,
// from redis-cli in the Redis container as ops.
func groupConsumers(t *testing.T, redis, stream, group string) map[string]int {
	t.Helper()
	out := docker(t, "exec", redis, "redis-cli", "--user", "ops", "xinfo", "consumers", stream, group)
	lines := strings.Split(out, "\n")
	consumers, name := map[string]int{}, ""
	for i := 0; i+1 < len(lines); i += 2 {
		switch k, v := strings.TrimSpace(lines[i]), strings.TrimSpace(lines[i+1]); k {
		case "name":
			name = v
		case "pending":
			n, err := strconv.Atoi(v)
			if err != nil || name == "" {
				t.Fatalf("XINFO CONSUMERS: %q", out)
			}
			consumers[name] = n
		}
	}
	return consumers
}

// postCustomers creates n customers in one request, off the test's
// goroutine, and answers their addresses.
func postCustomers(gateway, tag string, n int) ([]string, error) {
	var body []map[string]string
	var emails []string
	for i := range n {
		emails = append(emails, fmt.Sprintf("%s-%d@example.com", tag, i))
		body = append(body, map[string]string{"name": fmt.Sprintf("Customer %d", i), "email": emails[i]})
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post(gateway+"/customers", "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ids []string
	if err := json.NewDecoder(resp.Body).Decode(&ids); err != nil || resp.StatusCode != http.StatusOK || len(ids) != n {
		return nil, fmt.Errorf("POST /customers: %d, %d ids, %v", resp.StatusCode, len(ids), err)
	}
	return emails, nil
}
