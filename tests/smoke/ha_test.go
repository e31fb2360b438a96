package smoke

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
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

var haSeed = flag.Uint64("seed", 0, "the seed of TestHAFaults' runs (else HA_SEED, else the clock)")

// The HA variant (docker-compose.ha.yml) under one fault at a time, each on a
// fresh stack, while workers create customers and order products (one
// command in four: one or two pieces for a customer acknowledged before),
// each command with an Idempotency-Key of its own and sent again with it on
// a 503, a timeout or a lost connection: (kill) the primary's redis-server
// dies (SIGKILL) and comes back as the replica of the promoted one; (cut)
// the primary is cut off the network for 20 s; (replica) the replica
// restarts. After each, every command answered 2xx holds: its customer or
// order exists once, under the id it was answered, and the key answers that
// id again; no other order exists; each product's stock converges to its
// first stock less the pieces of the acknowledged orders; gateway -verify
// finds every stream's history (with the archive's) whole and the shop's
// invariants holding; each customer got one welcome mail. HA_RUNS (make
// ha-faults) runs each fault that many times with seeds HA_SEED, HA_SEED+1,
// …; without it the test is skipped.
func TestHAFaults(t *testing.T) {
	runs, seed := faultRuns(t, "make ha-faults")
	faults := []struct {
		name    string
		primary string // the primary after it
		fault   func(t *testing.T, s stack, l *haLoad)
	}{
		{"kill", "redis-replica", func(t *testing.T, s stack, l *haLoad) {
			redis := s.containers(t, "redis")[0]
			docker(t, "kill", "-s", "KILL", redis)
			l.mark()
			s.waitPrimary(t, "redis-replica")
			// Docker does not restart a container that docker kill stopped, as
			// compose's restart policy would after a crash: start it.
			if state := docker(t, "inspect", "-f", "{{.State.Status}}", redis); state != "running" {
				t.Logf("redis %s after docker kill: started again", state)
				docker(t, "start", redis)
			}
		}},
		{"cut", "redis-replica", func(t *testing.T, s stack, l *haLoad) {
			net, redis := s.project+"_default", s.containers(t, "redis")[0]
			docker(t, "network", "disconnect", net, redis)
			l.mark()
			time.Sleep(20 * time.Second) // the fault's length, not a synchronisation
			docker(t, "network", "connect", "--alias", "redis", net, redis)
			t.Logf("redis reconnected after 20 s")
		}},
		{"replica", "redis", func(t *testing.T, s stack, l *haLoad) {
			l.mark()
			docker(t, "restart", s.containers(t, "redis-replica")[0])
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			for run := range runs {
				seed := seed + uint64(run)
				t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
					eachCompose(t, "ha-"+f.name, stack{files: []string{"docker-compose.ha.yml"}}, func(t *testing.T, s stack) {
						underFault(t, s, seed, loadFault{
							variant: "HA", name: f.name, tag: "ha",
							healthy: 15, // two Redis, three Sentinels, PostgreSQL, nine services
							fault:   f.fault,
							settled: func(t *testing.T, s stack) { s.checkReplication(t, f.primary) },
							verify:  func(t *testing.T, s stack) { s.verify(t, "redis://ops:"+password("ops")+"@redis:6379/0") },
						})
					})
				})
			}
		})
	}
}

// faultRuns is the number of seeded runs of each fault (HA_RUNS; the test
// is skipped without it) and the first seed (-seed, else HA_SEED, else the
// clock).
func faultRuns(t *testing.T, target string) (int, uint64) {
	runs, _ := strconv.Atoi(os.Getenv("HA_RUNS"))
	if runs < 1 {
		t.Skip("HA_RUNS unset: " + target + " runs it")
	}
	seed := *haSeed
	if seed == 0 {
		seed, _ = strconv.ParseUint(os.Getenv("HA_SEED"), 10, 64)
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano() % 1e6)
	}
	t.Logf("HA_SEED=%d", seed)
	return runs, seed
}

// loadFault is a fault of a variant's stack, amid the client workload.
type loadFault struct {
	variant, name string
	tag           string // the prefix of the commands' keys
	healthy       int    // the containers of the stack, healthy once it is up
	fault         func(*testing.T, stack, *haLoad)
	settled       func(*testing.T, stack) // waits until Redis replicates as it should again
	verify        func(*testing.T, stack) // runs gateway -verify
}

// underFault brings the stack up, runs the load with the fault amid it, and
// checks what was acknowledged.
func underFault(t *testing.T, s stack, seed uint64, f loadFault) {
	start := time.Now()
	s.run(t, "up", "-d", "--no-build")
	s.waitHealthy(t, f.healthy)
	t.Logf("stack healthy %v after up", time.Since(start).Round(time.Second))
	g := scenario.Gateway("http://127.0.0.1:" + envOr("GATEWAY_PORT", "5000"))

	rng := rand.New(rand.NewPCG(seed, 22))
	l := &haLoad{g: g, tag: fmt.Sprintf("%s%d", f.tag, seed), stop: make(chan struct{})}
	l.stock(t, 3)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.work(w, rand.New(rand.NewPCG(seed, uint64(w))))
		}()
	}
	warm := time.Duration(5+rng.IntN(10)) * time.Second
	redistest.Eventually(t, time.Minute, "load warmed up", func() bool { return l.warmFor() >= warm })
	f.fault(t, s, l)
	redistest.Eventually(t, 2*time.Minute, "a command acknowledged after the fault", func() bool { return l.failover() > 0 })
	after := l.count()
	redistest.Eventually(t, time.Minute, "100 more commands acknowledged", func() bool { return l.count() >= after+100 })
	close(l.stop)
	wg.Wait()
	if n := l.other.Load(); n > 0 {
		t.Errorf("%d commands answered neither 2xx, 503 nor 409: %v", n, l.odd)
	}
	if n := l.refused.Load(); n > 0 {
		t.Errorf("%d orders refused for stock, of %d pieces of each product", n, haStock)
	}
	f.settled(t, s)

	acks := l.acks
	var emails []string
	for _, a := range acks {
		emails = append(emails, a.email)
	}
	// Each acknowledged customer once, under its id; its key answers it again.
	byEmail := map[string][]string{}
	for _, c := range g.List(t, "/customers") {
		e := fmt.Sprint(c["email"])
		byEmail[e] = append(byEmail[e], fmt.Sprint(c["id"]))
	}
	lost, twice := 0, 0
	for _, a := range acks {
		switch ids := byEmail[a.email]; {
		case len(ids) == 0:
			lost++
			t.Errorf("acknowledged %s (key %s) lost", a.id, a.key)
		case len(ids) > 1 || ids[0] != a.id:
			twice++
			t.Errorf("acknowledged %s (key %s): customers %v", a.id, a.key, ids)
		}
		if g.Get(t, "/customer/"+a.id) == nil {
			t.Errorf("GET /customer/%s: null", a.id)
		}
	}
	olost, otwice := l.checkOrders(t)
	lost, twice = lost+olost, twice+otwice
	for _, a := range slices.Concat(acks, l.orders) {
		if id, code, err := l.post(a); err != nil || code != http.StatusOK || id != a.id {
			t.Errorf("key %s sent again: %s %d %v, was acknowledged as %s", a.key, id, code, err, a.id)
		}
	}
	g.WaitMails(t, 3*time.Minute, "Welcome", emails)
	f.verify(t, s)
	t.Logf("%s %s seed %d: acknowledged %d customers, %d orders (%d refused, %d commands given up), 503s %d, 409s still running %d, no answer %d, retried %d, lost %d, twice %d, failover %v, outage %v",
		f.variant, f.name, seed, len(acks), len(l.orders), l.refused.Load(), l.gaveUp.Load(), l.n503.Load(), l.waited.Load(), l.failed.Load(), l.retries.Load(), lost, twice,
		l.failover().Round(100*time.Millisecond), l.outage().Round(100*time.Millisecond))
}

// haLoad is the client workload: what it was answered, and when.
type haLoad struct {
	g    scenario.Gateway
	tag  string
	stop chan struct{}
	// The products that orders take, and the id of each one's inventory,
	// which starts at haStock pieces.
	products  []string
	inventory map[string]string
	// refused counts the orders refused for stock (409); waited the 409s of
	// a key whose earlier try the gateway holds as running; failed the
	// tries answered no status (a timeout, a lost connection); gaveUp the
	// commands answered nothing but failures for two minutes.
	n503, waited, failed, retries, other, refused, gaveUp atomic.Int64
	// Unix nanoseconds: the load's start, the fault, the first failed and the
	// first 2xx request sent after it, the first 2xx sent after that failure,
	// the last 2xx of a command that failed after the fault.
	began, faulted, firstFail, firstOK, recovered, lastRecovered atomic.Int64
	mu                                                           sync.Mutex
	acks, orders                                                 []haAck  // customers, orders
	odd                                                          []string // the answers counted as other
}

// haAck is a command answered 2xx (or to be sent): a customer with its
// e-mail address, or an order of a customer for its pieces.
type haAck struct {
	key, id  string
	email    string
	customer string
	products []string
}

// request is the route and body of the command.
func (a haAck) request() (string, any) {
	if a.customer != "" {
		return "/order", map[string]any{"customer_id": a.customer, "product_ids": a.products}
	}
	return "/customer", map[string]string{"name": "HA " + a.key, "email": a.email}
}

// haStock is the stock of each product the load orders: more than it can
// order, so that no order is refused for stock.
const haStock = 1_000_000

var haClient = &http.Client{Timeout: 15 * time.Second}

// stock creates n products, each with haStock pieces in stock, for the
// orders.
func (l *haLoad) stock(t *testing.T, n int) {
	var products, stock []map[string]any
	for i := range n {
		products = append(products, map[string]any{"name": fmt.Sprintf("%s product %d", l.tag, i), "price": 100 + i})
	}
	l.products = l.g.Create(t, "/products", products)
	for _, p := range l.products {
		stock = append(stock, map[string]any{"product_id": p, "amount": haStock})
	}
	ids := l.g.Create(t, "/inventory", stock)
	if len(l.products) != n || len(ids) != n {
		t.Fatalf("created %d products and %d inventory, want %d", len(l.products), len(ids), n)
	}
	l.inventory = map[string]string{}
	for i, p := range l.products {
		l.inventory[p] = ids[i]
	}
}

// work sends commands until stop, each until it is answered 2xx, with a
// pause of 20 to 60 ms between commands: one in four (once a customer is
// acknowledged) orders one or two pieces for an acknowledged customer, the
// others create a customer.
func (l *haLoad) work(w int, rng *rand.Rand) {
	l.began.CompareAndSwap(0, time.Now().UnixNano())
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-time.After(time.Duration(20+rng.IntN(40)) * time.Millisecond):
		}
		c := haAck{key: fmt.Sprintf("%s-%d-%d", l.tag, w, i)}
		if customer := l.customer(rng); customer != "" && rng.IntN(4) == 0 {
			c.customer = customer
			for range 1 + rng.IntN(2) {
				c.products = append(c.products, l.products[rng.IntN(len(l.products))])
			}
		} else {
			c.email = c.key + "@example.com"
		}
		if id, ok := l.send(c, rng); ok {
			c.id = id
			l.mu.Lock()
			if c.customer != "" {
				l.orders = append(l.orders, c)
			} else {
				l.acks = append(l.acks, c)
			}
			l.mu.Unlock()
		}
	}
}

// customer is an acknowledged customer, "" before there is one.
func (l *haLoad) customer(rng *rand.Rand) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.acks) == 0 {
		return ""
	}
	return l.acks[rng.IntN(len(l.acks))].id
}

// send sends a command with its key until it is answered 2xx, for up to
// two minutes, and answers the id it was answered; false if it never was
// (answered 4xx, or given up).
func (l *haLoad) send(c haAck, rng *rand.Rand) (string, bool) {
	deadline := time.Now().Add(2 * time.Minute)
	failed := false // after the fault
	for try := 0; time.Now().Before(deadline); try++ {
		if try > 0 {
			l.retries.Add(1)
			time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond) // backoff
		}
		sent := time.Now().UnixNano()
		answer, code, err := l.post(c)
		if err == nil && code == http.StatusOK {
			if f := l.faulted.Load(); f != 0 && sent > f {
				l.firstOK.CompareAndSwap(0, time.Now().UnixNano())
				if ff := l.firstFail.Load(); ff != 0 && sent > ff {
					l.recovered.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
			for now := time.Now().UnixNano(); failed; {
				last := l.lastRecovered.Load()
				if now <= last || l.lastRecovered.CompareAndSwap(last, now) {
					break
				}
			}
			return answer, true
		}
		if f := l.faulted.Load(); f != 0 && sent > f {
			l.firstFail.CompareAndSwap(0, sent)
			failed = true
		}
		switch {
		case code == http.StatusServiceUnavailable:
			l.n503.Add(1)
		case err != nil:
			l.failed.Add(1)
		case code == http.StatusConflict && strings.Contains(answer, "out of stock"):
			l.refused.Add(1) // the key keeps the refusal
			return "", false
		case code == http.StatusConflict: // still running
			l.waited.Add(1)
		default:
			l.other.Add(1)
			l.mu.Lock()
			l.odd = append(l.odd, fmt.Sprintf("key %s: %d %s", c.key, code, answer))
			l.mu.Unlock()
			return "", false
		}
	}
	l.gaveUp.Add(1)
	return "", false
}

// post sends a command once with its Idempotency-Key and answers the id it
// created, or the answer's body when it is not 200.
func (l *haLoad) post(c haAck) (string, int, error) {
	path, v := c.request()
	body, _ := json.Marshal(v)
	req, _ := http.NewRequest("POST", string(l.g)+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", c.key)
	resp, err := haClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), resp.StatusCode, nil
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil || len(ids) != 1 {
		return "", resp.StatusCode, errors.Join(err, fmt.Errorf("answer %s", b))
	}
	return ids[0], resp.StatusCode, nil
}

// checkOrders checks the orders after the load: each acknowledged one
// exists once, under the id it was answered, with its customer and pieces,
// and no order exists that was not acknowledged, but for commands given
// up; and each product's stock converges to its first stock less the
// pieces the live orders hold, which, with none given up, are the
// acknowledged ones. The saga converges asynchronously: a reservation whose
// order was never recorded is released by the inventory's sweeper after its
// grace (RESERVATION_GRACE, 30 s) past the time the order was to be
// recorded by. It answers the orders lost and the orders found twice.
func (l *haLoad) checkOrders(t *testing.T) (lost, twice int) {
	live := map[string]scenario.Entity{}
	for _, o := range l.g.List(t, "/orders") {
		live[fmt.Sprint(o["id"])] = o
	}
	want := map[string]int{}
	for _, p := range l.products {
		want[p] = haStock
	}
	acked := map[string]bool{}
	for _, a := range l.orders {
		o, ok := live[a.id]
		switch {
		case acked[a.id]:
			twice++
			t.Errorf("order %s acknowledged twice (key %s)", a.id, a.key)
		case !ok:
			lost++
			t.Errorf("acknowledged order %s (key %s) lost", a.id, a.key)
		case o["customer_id"] != a.customer || fmt.Sprint(o["product_ids"]) != fmt.Sprint(a.products):
			t.Errorf("acknowledged order %s (key %s) of %s for %v: %v", a.id, a.key, a.customer, a.products, o)
		}
		acked[a.id] = true
	}
	var extra []string
	for id, o := range live {
		for _, p := range o["product_ids"].([]any) {
			want[p.(string)]--
		}
		if !acked[id] {
			extra = append(extra, fmt.Sprint(o))
		}
	}
	if len(extra) > int(l.gaveUp.Load()) {
		twice += len(extra)
		t.Errorf("%d orders that were not acknowledged, %d commands given up: %v", len(extra), l.gaveUp.Load(), extra)
	}
	var got map[string]int
	defer func() {
		if !maps.Equal(got, want) {
			t.Logf("stock by product %v, want %v", got, want)
		}
	}()
	redistest.Eventually(t, 2*time.Minute, "each product's stock its first less what the orders hold", func() bool {
		got = map[string]int{}
		for p, inv := range l.inventory {
			got[p] = int(l.g.Get(t, "/inventory/"+inv)["amount"].(float64))
		}
		return maps.Equal(got, want)
	})
	t.Logf("stock by product %v: what the orders leave", got)
	return lost, twice
}

// mark notes the time of the fault.
func (l *haLoad) mark() { l.faulted.Store(time.Now().UnixNano()) }

func (l *haLoad) warmFor() time.Duration {
	if b := l.began.Load(); b != 0 {
		return time.Duration(time.Now().UnixNano() - b)
	}
	return 0
}

// failover is the time from the fault to the end of the outage it caused:
// to the first 2xx of a request sent after the first that failed after the
// fault (or, if none failed, after the fault); 0 before there is one.
func (l *haLoad) failover() time.Duration {
	ok := l.recovered.Load()
	if l.firstFail.Load() == 0 {
		ok = l.firstOK.Load()
	}
	if ok == 0 {
		return 0
	}
	return time.Duration(ok - l.faulted.Load())
}

// outage is the time from the fault to the last 2xx of a command that
// failed after it: when only some commands fail (on a cluster, those of
// the slots of the master that is gone), the end of their outage.
func (l *haLoad) outage() time.Duration {
	if last := l.lastRecovered.Load(); last != 0 {
		return time.Duration(last - l.faulted.Load())
	}
	return 0
}

func (l *haLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks) + len(l.orders)
}

// checkReplication waits until the Sentinels name want the primary, which
// has one replica in sync, the other Redis.
func (s stack) checkReplication(t *testing.T, want string) {
	t.Helper()
	cli := func(service string, args ...string) string { return s.redisCLI(t, service, args...) }
	var primary, info string
	redistest.Eventually(t, 2*time.Minute, "a primary with its replica in sync", func() bool {
		primary = s.primary(t)
		if primary != want {
			return false
		}
		other := map[string]string{"redis": "redis-replica", "redis-replica": "redis"}[primary]
		if other == "" {
			return false
		}
		info = cli(primary, "info", "replication")
		return strings.Contains(info, "role:master") && strings.Contains(info, "connected_slaves:1") &&
			strings.Contains(cli(other, "info", "replication"), "master_link_status:up")
	})
	t.Logf("primary %s with its replica in sync", primary)
}

// redisCLI runs redis-cli as ops in the one container of a Redis service,
// and answers its output: "" if there is no such container.
func (s stack) redisCLI(t *testing.T, service string, args ...string) string {
	ids := s.containers(t, service)
	if len(ids) != 1 {
		return ""
	}
	out, _ := execOut("docker", append([]string{"exec", "-e", "REDISCLI_AUTH=" + password("ops"), ids[0], "redis-cli", "--user", "ops"}, args...)...)
	return out
}

// primary is the primary the Sentinels name (sentinel-1 asked).
func (s stack) primary(t *testing.T) string {
	out, _ := execOut("docker", "exec", s.containers(t, "sentinel-1")[0], "redis-cli", "-p", "26379", "sentinel", "get-master-addr-by-name", "ordershop")
	return strings.Fields(out + " ")[0]
}

// waitPrimary waits until the Sentinels name want the primary.
func (s stack) waitPrimary(t *testing.T, want string) {
	t.Helper()
	start := time.Now()
	redistest.Eventually(t, time.Minute, want+" promoted", func() bool { return s.primary(t) == want })
	took := time.Since(start)
	t.Logf("%s promoted %v after the fault", want, took.Round(100*time.Millisecond))
	if took > 15*time.Second { // down-after 5 s: what held the Sentinels back
		var events []string
		for _, line := range strings.Split(s.run(t, "logs", "--no-color", "sentinel-1", "sentinel-2", "sentinel-3"), "\n") {
			for _, e := range []string{"tilt", "sdown", "odown", "failover", "elected", "vote", "switch-master"} {
				if strings.Contains(line, e) {
					events = append(events, line)
					break
				}
			}
		}
		t.Logf("the Sentinels' events:\n%s", strings.Join(events, "\n"))
	}
}

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// verify stops the services and runs the gateway's binary once with
// -verify as ops at redisURL (with the variant's settings: the Sentinels,
// the cluster), which reads the archive (ARCHIVE_URL) beside the streams:
// the cache equals the streams' projection and the shop's invariants hold.
func (s stack) verify(t *testing.T, redisURL string) {
	t.Helper()
	// The archive follows the primary too, and archives every event that a
	// replica has: after the fault it catches up on every stream.
	redistest.Eventually(t, time.Minute, "the archive caught up (group archive: lag 0, nothing pending)", func() bool {
		lag, pending := s.dashboardGroup(t, "archive")
		return lag == 0 && pending == 0
	})
	s.run(t, "stop", "customer", "product", "inventory", "order", "billing", "crm", "msg", "archive")
	out, err := s.try("run", "--rm", "--no-deps", "-e", "REDIS_URL="+redisURL,
		"-e", "GOMEMLIMIT=192MiB", "gateway", "-verify")
	if err != nil || !strings.Contains(out, "ok: the cache of") {
		t.Errorf("gateway -verify: %v\n%s", err, out)
		// Which primary the archive followed: it copies what it reads.
		var lines []string
		for _, line := range strings.Split(s.run(t, "logs", "--no-color", "archive"), "\n") {
			if !strings.Contains(line, `"msg":"request"`) {
				lines = append(lines, line)
			}
		}
		t.Logf("the archive's log:\n%s", strings.Join(lines, "\n"))
	} else {
		t.Logf("gateway -verify: %s", out[strings.Index(out, "ok: the cache of"):][:strings.IndexByte(out[strings.Index(out, "ok: the cache of"):]+"\n", '\n')])
	}
}
