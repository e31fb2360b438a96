package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// results are one run's figures.
type results struct {
	cfg                   config
	http                  map[string]load // by readKey, "POST /customer gateway|direct"
	xadd, evalsha         ops             // redis-benchmark, cfg.conns clients
	xaddBatch             ops             // 1 client, pipelined 100 deep
	rawDrain, storeDrain  float64         // events per second
	archive               archived        // the drain's backlog archived to PostgreSQL
	crm                   map[int]float64 // CONSUMER_WORKERS → events per second
	loadBefore, loadAfter string
	took                  time.Duration
	base                  baseline
	// POST /customer through today's gateway and through the baseline
	// code's, side by side, when the baseline is other code than today's.
	postNow, postBase *load
	// POST /customer with REDIS_MIN_REPLICAS=1 and without, a replica
	// following the Redis in both.
	postWaiting, postAlone *load
}

// baseline is POST /customer as it was before issue 14's work on writes,
// kept in docs/BENCHMARKS.md from run to run: its target is a multiple of
// it. The bare program's read of 10 customers in the same run puts both on
// one scale, whatever else the machine was doing.
type baseline struct {
	Date    string        `json:"date"`
	Commit  string        `json:"commit"`
	Code    string        `json:"code"` // the last commit that changed the services' code then
	Post    float64       `json:"post_customer"`
	PostCPU time.Duration `json:"post_customer_cpu_ns"`
	Bare    float64       `json:"bare_customers_10"`
}

var baselineLine = regexp.MustCompile(`<!-- bench-baseline (\{.*\}) -->`)

const history = "\n## History\n"

// readBaseline reads the baseline from the file the table goes to; none
// when there is none, or with -rebaseline.
func readBaseline(cfg config) (baseline, error) {
	var base baseline
	if cfg.out == "-" || cfg.baseline {
		return base, nil
	}
	old, err := os.ReadFile(cfg.out)
	if os.IsNotExist(err) {
		return base, nil
	}
	if m := baselineLine.FindSubmatch(old); m != nil {
		err = json.Unmarshal(m[1], &base)
	}
	if err != nil {
		return base, fmt.Errorf("%s: the baseline: %w", cfg.out, err)
	}
	return base, nil
}

// write writes the table to cfg.out, above what the file holds from its
// "## History" on, or prints it.
func (r *results) write() error {
	var old []byte
	if r.cfg.out != "-" {
		var err error
		if old, err = os.ReadFile(r.cfg.out); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	base := r.base
	if base.Post == 0 {
		post := r.http["POST /customer gateway"]
		base = baseline{Date: r.cfg.began.Format("2006-01-02"), Commit: commit(), Code: codeCommit(),
			Post: post.Max, PostCPU: post.CPU, Bare: r.http[readKey("/customers", 10, "bare")].Max}
	}
	text := r.markdown(base)
	if r.cfg.out == "-" {
		fmt.Print(text)
		return nil
	}
	if i := strings.Index(string(old), history); i >= 0 {
		text += string(old[i:])
	}
	return os.WriteFile(r.cfg.out, []byte(text), 0o644)
}

func (r *results) markdown(base baseline) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := r.cfg
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`go run ./bench`, see its doc comment) on %s. Everything above\n", c.began.Format("2006-01-02"))
	p("[History](#history) is generated; the history is kept from run to run.\n\n")
	p("- **Machine:** %s\n", machine())
	p("- **Commit:** %s\n", commit())
	p("- **Command:** `make bench` (`go run ./bench -time %v -conns %d -n %d -drain %d -crm %d -batch %d`), %s in all, build included\n",
		c.d, c.conns, c.n, c.drain, c.crm, c.batch, r.took.Round(time.Second))
	p("- **Load average** (1, 5, 15 min) before: %s; after: %s\n\n", r.loadBefore, r.loadAfter)
	p("The machine is shared: absolute figures move by ±20%% and more from run to run.\n")
	p("Each figure stands beside its yardstick, measured minutes apart in the same run:\n")
	p("**the ratios are what count.**\n\n")

	p("## Targets (issue 14)\n\n")
	p("| what | now | yardstick | ratio | target | |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, path := range []string{"/customers", "/report"} {
		for _, n := range []int{10, 1000} {
			g, bare := r.http[readKey(path, n, "gateway")], r.http[readKey(path, n, "bare")]
			speed, cpu := g.Max/bare.Max, float64(bare.CPU)/float64(g.CPU)
			p("| GET %s, %s customers, max | %s req/s, %s CPU/req | bare program: %s req/s, %s CPU/req | %.2f; CPU %.2f² | ≥ 0.90 | %s |\n",
				path, thousands(float64(n)), thousands(g.Max), us(g.CPU), thousands(bare.Max), us(bare.CPU), speed, cpu, met(speed >= 0.9 && cpu >= 0.9))
		}
	}
	post := r.http["POST /customer gateway"]
	bareNow := r.http[readKey("/customers", 10, "bare")].Max
	scaled := (post.Max / bareNow) / (base.Post / base.Bare)
	if r.postBase != nil {
		now, then := r.postNow.Max/r.postBase.Max, float64(r.postBase.CPU)/float64(r.postNow.CPU)
		p("| POST /customer, max | %s req/s, %s CPU/req | the baseline's code (%s, of %s) in this run¹: %s req/s, %s CPU/req | %.2f; CPU %.2f³ | ≥ 2 | %s |\n",
			thousands(r.postNow.Max), us(r.postNow.CPU), base.Code, base.Date, thousands(r.postBase.Max), us(r.postBase.CPU), now, then, met(now >= 2))
	} else {
		p("| POST /customer, max | %s req/s, %s CPU/req | baseline of %s (%s): %s req/s, %s CPU/req | %.2f; %.2f on the bare program's scale¹ | ≥ 2 | %s |\n",
			thousands(post.Max), us(post.CPU), base.Date, base.Commit, thousands(base.Post), us(base.PostCPU),
			post.Max/base.Post, scaled, met(scaled >= 2))
	}
	p50 := post.P99At(0.5)
	p("| POST /customer, p99 at 50%% of max | %s | | | ≤ 20 ms | %s |\n", ms(p50), met(p50 <= 20*time.Millisecond))
	p("| drain of %s events, no-op handler (pkg/eventstore consumer) | %s events/s | raw XREADGROUP+XACK: %s events/s | %.2f | ≥ 0.50 | %s |\n",
		thousands(float64(c.drain)), thousands(r.storeDrain), thousands(r.rawDrain), r.storeDrain/r.rawDrain, met(r.storeDrain/r.rawDrain >= 0.5))
	postMax := post.Max
	if r.postNow != nil {
		postMax = r.postNow.Max
	}
	p("| archive of %s events into PostgreSQL (pkg/archive, one stream) | %s events/s | POST /customer, max: %s req/s | %.2f | ≥ 2 | %s |\n",
		thousands(float64(c.drain)), thousands(r.archive.PerSecond), thousands(postMax), r.archive.PerSecond/postMax, met(r.archive.PerSecond/postMax >= 2))
	w1, w8 := r.crm[1], r.crm[8]
	p("| crm + msg, %s customer events, CONSUMER_WORKERS=8 | %s events/s | CONSUMER_WORKERS=1: %s events/s | %.2f | ≥ 4 | %s |\n\n",
		thousands(float64(c.crm)), thousands(w8), thousands(w1), w8/w1, met(w8/w1 >= 4))
	p("¹ The baseline is POST /customer as measured on %s at %s, recorded in this file\n", base.Date, base.Commit)
	p("(`go run ./bench -rebaseline` records it anew). When the services' code has changed\n")
	p("since (its last commit then: %s), make bench builds that code's gateway and\n", base.Code)
	p("customer service too and measures both, in turns, in the same run. Until then the\n")
	p("ratio shown is to the recorded figure, also on the scale of the bare program's\n")
	p("GET /customers of 10 customers in each run (now %s req/s, then %s req/s),\n", thousands(bareNow), thousands(base.Bare))
	p("which a busier machine slows alike.\n\n")
	p("² The CPU time the serving processes (the gateway or the bare program, and Redis)\n")
	p("spent per request in the closed loops, the bare program's ÷ the gateway's. On two\n")
	p("cores the load generator takes about one of them, so a throughput ratio flatters\n")
	p("the slower server; CPU per request does not depend on the client, nor much on what\n")
	p("else the machine runs. A read target is met when both ratios are.\n\n")
	p("³ The CPU time of the gateway, the customer service and Redis per POST: the\n")
	p("baseline's ÷ now's. The target is judged on the throughput.\n\n")
	p("## Every figure of this run\n\n")
	p("Max: a closed loop of %d requests in flight for %v (after a warm-up of %v). Then\n", c.conns, c.d, c.d/5)
	p("an open loop at 25, 50 and 75%% of that max for %v each: every request is sent\n", c.d)
	p("on schedule whether the ones before it were answered or not, so a stall shows in\n")
	p("the latencies (no coordinated omission): each counts from when its request was due.\n")
	p("vegeta, on the same machine. A step whose load generator fell behind (\"sent … of …\")\n")
	p("or whose requests failed (timed out after 5 s) ran while the machine was busier than\n")
	p("when the max was measured, also when tried again: its latencies tell of the machine\n")
	p("more than of the server.\n\n")
	p("CPU/req: the CPU time of the processes serving the request (the gateway or the bare\n")
	p("program, the customer service for POSTs, and Redis) per request in the closed loops;\n")
	p("Redis's part of it beside.\n\n")
	p("| request | server | max | CPU/req (Redis) | p50 / p99 at 25%% | at 50%% | at 75%% |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, n := range []int{10, 1000} {
		for _, path := range []string{"/customers", "/report"} {
			for _, server := range []string{"gateway", "bare"} {
				r.row(&b, fmt.Sprintf("GET %s, %s customers", path, thousands(float64(n))), server, r.http[readKey(path, n, server)])
			}
		}
	}
	r.row(&b, "POST /customer", "gateway", post)
	direct := r.http["POST /customer direct"]
	r.row(&b, "POST /customer", "customer service, straight", direct)
	if w, a := r.postWaiting, r.postAlone; w != nil {
		r.row(&b, "POST /customer, a replica following", "REDIS_MIN_REPLICAS=1 (WAIT)", *w)
		r.row(&b, "POST /customer, a replica following", "REDIS_MIN_REPLICAS=0", *a)
	}
	p("\nThe gateway's hop on writes: POST /customer through it does %.2f of what the\n", post.Max/direct.Max)
	p("customer service does when asked straight. Reads of 1,000 customers include\n")
	p("the few products, stock, orders and billings /report lists too; crm is not\n")
	p("running meanwhile (its mails are measured below).\n\n")
	if w, a := r.postWaiting, r.postAlone; w != nil {
		p("Acknowledged on two nodes: with a replica following the Redis, POST /customer\n")
		p("whose every append waits for the replica (REDIS_MIN_REPLICAS=1, a WAIT in the\n")
		p("script's round trip) does %.2f of the rate of the same without the WAIT, at\n", w.Max/a.Max)
		p("%.2f× its CPU per request (the replica's included in both), p99 at 50%% of max\n", float64(w.CPU)/float64(a.CPU))
		p("%s against %s.\n\n", ms(w.P99At(0.5)), ms(a.P99At(0.5)))
	}

	p("| yardstick | figure | beside it |\n| --- | --- | --- |\n")
	p("| XADD of an event's envelope (redis-benchmark -c %d -P 1 -n %d) | %s/s, %s Redis CPU each | POST /customer through the gateway: %.3f of the rate; Redis CPU per POST %.1f× an XADD's |\n",
		c.conns, c.n, thousands(r.xadd.PerSecond), us(r.xadd.CPU), post.Max/r.xadd.PerSecond, float64(post.Redis)/float64(r.xadd.CPU))
	p("| EVALSHA of a script that does that one XADD (-c %d -P 1) | %s/s, %s Redis CPU each | %.2f of XADD's rate; %.1f× its Redis CPU: what running a script costs |\n",
		c.conns, thousands(r.evalsha.PerSecond), us(r.evalsha.CPU), r.evalsha.PerSecond/r.xadd.PerSecond, float64(r.evalsha.CPU)/float64(r.xadd.CPU))
	p("| XADD pipelined 100 deep, one client (-c 1 -P 100 -n %d) | %s/s, %s Redis CPU each | |\n", 10*c.n, thousands(r.xaddBatch.PerSecond), us(r.xaddBatch.CPU))
	p("| raw drain: XREADGROUP COUNT %d, its XACK pipelined with the next read | %s events/s | |\n", c.batch, thousands(r.rawDrain))
	p("| pkg/eventstore consumer, batch %d, no-op handler | %s events/s | %.2f of raw |\n", c.batch, thousands(r.storeDrain), r.storeDrain/r.rawDrain)
	p("| archiver: a stream's backlog into PostgreSQL, batch 500, one INSERT a batch | %s events/s | %.0f bytes an event in PostgreSQL (table and key), %.0f in the Redis stream |\n",
		thousands(r.archive.PerSecond), r.archive.PostgresBytes, r.archive.RedisBytes)
	p("| crm + msg, CONSUMER_WORKERS=1: a welcome mail per customer event | %s events/s | |\n", thousands(w1))
	p("| crm + msg, CONSUMER_WORKERS=8 | %s events/s | %.2f× 1 worker |\n\n", thousands(w8), w8/w1)
	p("The drains read a backlog appended before they start, on keys of their own. crm's\n")
	p("is timed from its process's start until its group has read and acked every\n")
	p("customer event (`XINFO GROUPS`: lag 0, pending 0), and then msg must hold one mail\n")
	p("per customer. CONSUMER_WORKERS is passed to crm whether it reads it or not.\n\n")
	j, _ := json.Marshal(base)
	p("<!-- bench-baseline %s -->\n", j)
	return b.String()
}

func (r *results) row(b *strings.Builder, request, server string, l load) {
	fmt.Fprintf(b, "| %s | %s | %s req/s | %s (%s) |", request, server, thousands(l.Max), us(l.CPU), us(l.Redis))
	for _, s := range l.Steps {
		fmt.Fprintf(b, " %s / %s", ms(s.P50), ms(s.P99))
		if s.Achieved < 0.95*s.Rate {
			fmt.Fprintf(b, " (sent %s of %s/s)", thousands(s.Achieved), thousands(s.Rate))
		}
		if s.Failed > 0 {
			fmt.Fprintf(b, " (%.0f%% failed)", 100*s.Failed)
		}
		b.WriteString(" |")
	}
	b.WriteString("\n")
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not yet"
}

// thousands is n rounded, with thousands separated by commas: 12,700.
func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// us is d in microseconds, to a precision that suits it.
func us(d time.Duration) string {
	v := float64(d) / float64(time.Microsecond)
	if v < 10 {
		return fmt.Sprintf("%.1f µs", v)
	}
	return fmt.Sprintf("%.0f µs", v)
}

// ms is d in milliseconds, to a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// commit is HEAD's short hash, "-dirty" when the tree differs from it
// (this file aside).
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, _ := exec.Command("git", "status", "--porcelain", "--", ".", ":!docs/BENCHMARKS.md").Output(); len(st) > 0 {
		c += "-dirty"
	}
	return c
}

// codeCommit is the last commit that changed the services' code: what a
// baseline's figures were measured on.
func codeCommit() string {
	out, err := exec.Command("git", "log", "-1", "--format=%h", "--", "services", "internal", "pkg").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// machine is the CPU, cores, memory, kernel, Go and Redis.
func machine() string {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(b); m != nil {
			cpu = string(m[1])
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	redisVersion := "?"
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		if m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out); m != nil {
			redisVersion = string(m[1])
		}
	}
	return fmt.Sprintf("%s, %d cores, %s, Linux %s, %s, redis-server %s (no persistence), all on 127.0.0.1",
		cpu, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)), runtime.Version(), redisVersion)
}
