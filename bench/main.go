// Command bench measures OrderShop beside its yardsticks and writes
// docs/BENCHMARKS.md: make bench.
//
// It runs the binaries of bin/ (make build) as processes on loopback with a
// throwaway redis-server, drives them with vegeta (the max throughput of a
// closed loop, then p50/p99 at fixed rates, free of coordinated omission),
// and measures in the same run what each figure is to be compared with: the
// bare read program (bench/bare), redis-benchmark's XADD and EVALSHA, a raw
// XREADGROUP+XACK drain. The machine it runs on may be busy with other work,
// so the table shows each figure as a ratio to its yardstick: ratios from
// one run are what count.
//
//	go run ./bench                 the full run, about 2½ minutes, writes docs/BENCHMARKS.md
//	go run ./bench -quick          seconds per figure, prints the table only
//	go run ./bench -urls published=http://127.0.0.1:5000,direct=http://172.18.0.9:5000
//	                               max GET /customers and POST /customer of running gateways
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/ordershop/ordershop/pkg/eventstore"
)

// config is the run's size; every part of it is bounded by these.
type config struct {
	d        time.Duration // each attack
	conns    int           // closed loop's requests in flight; redis-benchmark's clients
	n        int           // redis-benchmark's requests
	drain    int           // events of the no-op drain's backlog
	crm      int           // customer events crm drains
	batch    int64         // entries per read of the drains: the services' BATCH default
	out      string
	bin      string
	began    time.Time
	baseline bool
}

func main() {
	log.SetFlags(log.Ltime)
	began := time.Now()
	var cfg config
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") != "", "a short run that prints the table only (BENCH_QUICK)")
	flag.DurationVar(&cfg.d, "time", envDuration("BENCHTIME", 2*time.Second), "duration of each attack (BENCHTIME)")
	flag.IntVar(&cfg.conns, "conns", 16, "requests in flight of the closed loop, and redis-benchmark's clients")
	flag.IntVar(&cfg.n, "n", 100_000, "requests of each redis-benchmark run")
	flag.IntVar(&cfg.drain, "drain", 100_000, "events of the no-op drain's backlog")
	flag.IntVar(&cfg.crm, "crm", 10_000, "customer events crm and msg drain, with CONSUMER_WORKERS=1 and 8")
	flag.Int64Var(&cfg.batch, "batch", 50, "entries per read of the drains (the services' BATCH default)")
	flag.StringVar(&cfg.out, "out", "docs/BENCHMARKS.md", `the file to write the table to, above its "## History"; "-" prints it only`)
	flag.StringVar(&cfg.bin, "bin", "bin", "the services' binaries (make build)")
	flag.BoolVar(&cfg.baseline, "rebaseline", false, "record this run's POST /customer as the baseline the target is a multiple of")
	since := flag.Float64("since", 0, "Unix time make bench started at, to report its whole duration")
	urls := flag.String("urls", "", "name=URL,…: measure these running gateways only (see scripts/bench-proxy.sh)")
	flag.Parse()
	cfg.began = began
	if *since > 0 {
		cfg.began = time.Unix(0, int64(*since*1e9))
	}
	if *quick {
		cfg.d, cfg.n, cfg.drain, cfg.crm = 500*time.Millisecond, 20_000, 20_000, 2_000
		if !isFlagSet("out") {
			cfg.out = "-"
		}
	}
	// No signal handling: an interrupt ends the driver, and its children
	// die with it (procAttr).
	ctx := context.Background()
	var err error
	if *urls != "" {
		err = gateways(ctx, cfg, *urls)
	} else {
		err = bench(ctx, cfg)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// bench is the whole run: the shop under load, the yardsticks, the table.
func bench(ctx context.Context, cfg config) error {
	for _, tool := range []string{"redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not on the PATH: apt-get install redis-server redis-tools", tool)
		}
	}
	for _, name := range services {
		if _, err := os.Stat(filepath.Join(cfg.bin, name)); err != nil {
			return fmt.Errorf("no %s in %s: run make build first (make bench does)", name, cfg.bin)
		}
	}
	bare := filepath.Join(cfg.bin, "bare")
	if out, err := exec.Command(goTool(), "build", "-o", bare, "./bench/bare").CombinedOutput(); err != nil {
		return fmt.Errorf("build bench/bare: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "ordershop-bench")
	if err != nil {
		return err
	}
	r := &results{cfg: cfg, http: map[string]load{}, crm: map[int]float64{}, loadBefore: loadavg()}
	if r.base, err = readBaseline(cfg); err != nil {
		return err
	}
	var baseBin string
	if r.base.Code != "" && r.base.Code != codeCommit() {
		if baseBin, err = buildBaseline(dir, r.base.Code); err != nil {
			return err
		}
	}
	if err := r.run(ctx, dir, bare, baseBin); err != nil {
		return fmt.Errorf("%w (the processes' logs are in %s)", err, dir)
	}
	os.RemoveAll(dir)
	r.loadAfter = loadavg()
	r.took = time.Since(cfg.began)
	return r.write()
}

// run measures everything on one throwaway Redis: the shop's requests, the
// Redis yardsticks, the drains on keys of their own.
func (r *results) run(ctx context.Context, dir, bare, baseBin string) error {
	rp, rdb, err := startRedis(ctx, dir, "redis")
	if err != nil {
		return err
	}
	defer rp.stop()
	if err := r.requests(ctx, dir, bare, rp, rdb); err != nil {
		return err
	}
	if baseBin != "" {
		if err := r.postBeside(ctx, dir, baseBin, rp, rdb); err != nil {
			return err
		}
	}
	if err := r.postReplicated(ctx, dir, rp, rdb); err != nil {
		return err
	}
	if err := r.redisBenchmarks(ctx, rp, rdb); err != nil {
		return err
	}
	return r.drains(ctx, dir, rdb)
}

// requests measures the gateway's reads beside the bare program's, of 10
// then of 1,000 customers, then POST /customer through the gateway and
// straight to the customer service.
func (r *results) requests(ctx context.Context, dir, bare string, rp *proc, rdb *redis.Client) error {
	redisAddr := rdb.Options().Addr
	s, err := newShop(dir, r.cfg.bin, redisAddr, "")
	if err != nil {
		return err
	}
	defer s.stop()
	// crm is left out: it would mail the customers the writes create, on
	// the same two cores; its drain is measured apart.
	for _, name := range services {
		if name != "crm" {
			if err := s.startService(ctx, name); err != nil {
				return err
			}
		}
	}
	bareAddr, err := freeAddr()
	if err != nil {
		return err
	}
	bp, err := start(dir, "bare", bare, []string{"ADDR=" + bareAddr, "REDIS_URL=redis://" + redisAddr + "/0", "KEY_PREFIX="})
	if err != nil {
		return err
	}
	defer bp.stop()
	gw, br := "http://"+s.addr["gateway"], "http://"+bareAddr
	if err := poll(ctx, 10*time.Second, "bare up", func() bool { _, err := fetch(br + "/customers"); return err == nil }); err != nil {
		return err
	}

	a := attacker{conns: r.cfg.conns, d: r.cfg.d}
	if err := seedCustomers(gw, 10); err != nil {
		return err
	}
	if err := seedCollections(gw); err != nil {
		return err
	}
	for _, n := range []int{10, 1000} {
		if err := seedCustomers(gw, n); err != nil {
			return err
		}
		for _, path := range []string{"/customers", "/report"} {
			if err := sameAnswers(gw+path, br+path); err != nil {
				return err
			}
			log.Printf("GET %s, %d customers", path, n)
			g, b, err := a.measure("GET "+path, side{get(gw + path), []*proc{s.procs["gateway"], rp}, rp},
				side{get(br + path), []*proc{bp, rp}, rp})
			if err != nil {
				return err
			}
			r.http[readKey(path, n, "gateway")], r.http[readKey(path, n, "bare")] = g, b
		}
	}
	log.Printf("POST /customer")
	r.http["POST /customer gateway"], r.http["POST /customer direct"], err = a.measure("POST /customer",
		side{postJSON(gw+"/customer", loadCustomer), []*proc{s.procs["gateway"], s.procs["customer"], rp}, rp},
		side{postJSON("http://"+s.addr["customer"]+"/customer", loadCustomer), []*proc{s.procs["customer"], rp}, rp})
	if err != nil {
		return err
	}
	return nil
}

// postBeside measures POST /customer through today's gateway and customer
// service and through the baseline code's, in turns, each with keys of its
// own.
func (r *results) postBeside(ctx context.Context, dir, baseBin string, rp *proc, rdb *redis.Client) error {
	log.Printf("POST /customer beside the baseline's code, %s", r.base.Code)
	var sides []side
	for _, bin := range []string{r.cfg.bin, baseBin} {
		s, err := postShop(ctx, dir, bin, filepath.Base(bin)+":", rp, rdb)
		if err != nil {
			return err
		}
		defer s.stop()
		sides = append(sides, s.post(rp))
	}
	now, base, err := attacker{conns: r.cfg.conns, d: r.cfg.d}.measure("POST /customer", sides[0], sides[1])
	r.postNow, r.postBase = &now, &base
	return err
}

// postReplicated measures POST /customer with each append waiting for a
// replica to have it (REDIS_MIN_REPLICAS=1: a WAIT in the script's round
// trip) beside the same without, in turns, on the same primary with a
// replica following it: the cost of an acknowledgement on two nodes.
func (r *results) postReplicated(ctx context.Context, dir string, rp *proc, rdb *redis.Client) error {
	log.Printf("POST /customer with and without REDIS_MIN_REPLICAS=1")
	host, port, _ := net.SplitHostPort(rdb.Options().Addr)
	replica, rr, err := startRedis(ctx, dir, "replica", "--replicaof", host, port)
	if err != nil {
		return err
	}
	defer replica.stop()
	err = poll(ctx, 30*time.Second, "the replica in sync", func() bool {
		info, _ := rr.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	if err != nil {
		return err
	}
	var sides []side
	for _, env := range []string{"REDIS_MIN_REPLICAS=1", "REDIS_MIN_REPLICAS=0"} {
		s, err := postShop(ctx, dir, r.cfg.bin, "replicas"+env[len(env)-1:]+":", rp, rdb, env)
		if err != nil {
			return err
		}
		defer s.stop()
		side := s.post(rp)
		side.procs = append(side.procs, replica)
		sides = append(sides, side)
	}
	waiting, alone, err := attacker{conns: r.cfg.conns, d: r.cfg.d}.measure("POST /customer", sides[0], sides[1])
	r.postWaiting, r.postAlone = &waiting, &alone
	return err
}

// postShop starts the gateway and the customer service of bin, with keys
// under prefix, the customer service with env.
func postShop(ctx context.Context, dir, bin, prefix string, rp *proc, rdb *redis.Client, env ...string) (*shop, error) {
	s, err := newShop(dir, bin, rdb.Options().Addr, prefix)
	if err != nil {
		return nil, err
	}
	if err := s.startService(ctx, "customer", env...); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.startService(ctx, "gateway"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// post is POST /customer through the shop's gateway, with the processes
// that serve it.
func (s *shop) post(rp *proc) side {
	return side{postJSON("http://"+s.addr["gateway"]+"/customer", loadCustomer),
		[]*proc{s.procs["gateway"], s.procs["customer"], rp}, rp}
}

// buildBaseline builds the gateway and the customer service of a commit
// into dir/baseline, from the repository's history.
func buildBaseline(dir, commit string) (string, error) {
	log.Printf("building the baseline's gateway and customer service, %s", commit)
	src, bin := filepath.Join(dir, "baseline-src"), filepath.Join(dir, "baseline")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("sh", "-c", `git archive "$1" | tar -x -C "$2"`, "sh", commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("the baseline's code, %s: %v\n%s", commit, err, out)
	}
	build := exec.Command(goTool(), "build", "-trimpath", "-o", bin+"/", "./services/gateway", "./services/customer")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the baseline's code, %s: %v\n%s", commit, err, out)
	}
	return bin, nil
}

// redisBenchmarks measures what Redis does for an append without the shop.
func (r *results) redisBenchmarks(ctx context.Context, rp *proc, rdb *redis.Client) error {
	log.Printf("redis-benchmark")
	for range 2 { // the better of two, in turns
		x, err := xadd(ctx, rp, rdb, r.cfg.conns, 1, r.cfg.n)
		if err != nil {
			return err
		}
		e, err := evalsha(ctx, rp, rdb, r.cfg.conns, 1, r.cfg.n)
		if err != nil {
			return err
		}
		r.xadd, r.evalsha = x.better(r.xadd), e.better(r.evalsha)
	}
	var err error
	r.xaddBatch, err = xadd(ctx, rp, rdb, 1, 100, 10*r.cfg.n)
	return err
}

// drains measures the no-op drain beside the raw one, then crm and msg.
func (r *results) drains(ctx context.Context, dir string, rdb *redis.Client) error {
	log.Printf("drain of %d events", r.cfg.drain)
	store := eventstore.New(rdb, "drain:")
	if err := backlog(ctx, store, r.cfg.drain); err != nil {
		return err
	}
	for i := range 3 { // the best of three, in turns, each with groups of its own
		raw, err := rawDrain(ctx, rdb, store.StreamKey("customer"), fmt.Sprint("raw", i), r.cfg.drain, r.cfg.batch)
		if err != nil {
			return err
		}
		own, err := storeDrain(ctx, store, fmt.Sprint("bench", i), r.cfg.drain, r.cfg.batch)
		if err != nil {
			return err
		}
		r.rawDrain, r.storeDrain = max(r.rawDrain, raw), max(r.storeDrain, own)
	}
	log.Printf("archive of the %d events", r.cfg.drain)
	var err error
	if r.archive, err = archiveDrain(ctx, store, r.cfg.drain); err != nil {
		return err
	}

	for _, workers := range []int{1, 8} {
		log.Printf("crm and msg: %d customer events, CONSUMER_WORKERS=%d", r.cfg.crm, workers)
		var err error
		if r.crm[workers], err = crmDrain(ctx, dir, r.cfg, rdb, workers); err != nil {
			return err
		}
	}
	return nil
}

// crmDrain times crm, with workers, mailing a welcome through msg for each
// of n customers created while it was not running: from its start until
// its group has read and acked every customer event. Its keys are its own.
func crmDrain(ctx context.Context, dir string, cfg config, rdb *redis.Client, workers int) (float64, error) {
	prefix := fmt.Sprintf("crm%d:", workers)
	s, err := newShop(dir, cfg.bin, rdb.Options().Addr, prefix)
	if err != nil {
		return 0, err
	}
	defer s.stop()
	for _, name := range []string{"customer", "msg"} {
		if err := s.startService(ctx, name); err != nil {
			return 0, err
		}
	}
	for done := 0; done < cfg.crm; done += 1000 {
		if err := createCustomers("http://"+s.addr["customer"]+"/customers", min(1000, cfg.crm-done)); err != nil {
			return 0, err
		}
	}
	store := eventstore.New(rdb, prefix)
	began := time.Now()
	if err := s.startService(ctx, "crm", "CONSUMER_WORKERS="+strconv.Itoa(workers)); err != nil {
		return 0, err
	}
	if err := poll(ctx, 3*time.Minute, "crm's drain", func() bool { return drained(ctx, store, "crm") }); err != nil {
		return 0, err
	}
	elapsed := time.Since(began)
	if mails, err := rdb.SCard(ctx, prefix+"{email}:email_ids").Result(); err != nil || mails != int64(cfg.crm) {
		return 0, fmt.Errorf("crm's drain sent %d mails for %d customers (%v)", mails, cfg.crm, err)
	}
	return float64(cfg.crm) / elapsed.Seconds(), nil
}

// gateways measures running gateways, e.g. one stack through its published
// port and through its container's address: the max throughput of GET
// /customers (10 customers) and POST /customer of each, the better of two
// closed loops taken in turns, and prints a table.
func gateways(ctx context.Context, cfg config, list string) error {
	var names, urls []string
	for _, item := range strings.Split(list, ",") {
		name, url, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("-urls: %q is not name=URL", item)
		}
		names, urls = append(names, name), append(urls, strings.TrimSuffix(url, "/"))
	}
	if err := seedCustomers(urls[0], 10); err != nil {
		return err
	}
	a := attacker{conns: cfg.conns, d: cfg.d}
	fmt.Printf("\n%d requests in flight, the better of two runs of %v each, in turns:\n\n", cfg.conns, cfg.d)
	fmt.Printf("| request | %s | first ÷ last |\n| --- |%s --- |\n", strings.Join(names, " | "), strings.Repeat(" --- |", len(names)))
	for _, t := range []struct {
		name   string
		target func(string) vegeta.Target
	}{
		{"GET /customers (10)", func(u string) vegeta.Target { return get(u + "/customers") }},
		{"POST /customer", func(u string) vegeta.Target { return postJSON(u+"/customer", loadCustomer) }},
	} {
		best := make([]float64, len(urls))
		for round := range 3 {
			for i, u := range urls {
				d := cfg.d
				if round == 0 {
					d /= 5 // warm-up
				}
				m, err := a.attack(t.name, t.target(u), d)
				if err != nil {
					return err
				}
				if round > 0 {
					best[i] = max(best[i], m.Throughput)
				}
			}
		}
		row := "| " + t.name + " |"
		for _, b := range best {
			row += " " + thousands(b) + " req/s |"
		}
		fmt.Printf("%s %.2f |\n", row, best[0]/best[len(best)-1])
	}
	return ctx.Err()
}

// loadCustomer is the body of the POST /customer of every attack.
const loadCustomer = `{"name":"Load","email":"load@example.com"}`

func readKey(path string, n int, server string) string {
	return fmt.Sprintf("GET %s N=%d %s", path, n, server)
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// loadavg is the machine's load average over 1, 5 and 15 minutes.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// goTool is the go command make runs (GO), else the one on the PATH.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
