package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
)

// The chaos: a minute of clients that create customers, products with
// stock, orders (updated and deleted too) and billings (set done), while the
// services that keep state across calls or events are SIGKILLed and started
// again at random.
const (
	chaosLoad    = 60 * time.Second
	chaosWorkers = 6
	chaosOps     = 500 // per worker at most
)

// victims are the services the monkey kills: the gateway, customer and
// product are spared, so that a client can always reach the shop.
var victims = []string{"order", "inventory", "crm", "billing", "msg"}

// While order, inventory, crm, billing and msg are killed and restarted at
// random, clients keep using the shop. Afterwards, with every service back:
// the stock converges (what the inventory has plus what the live orders hold
// is what was put in, and every reservation is exactly its live order's),
// every customer got one welcome and every order created one thank-you and
// one payment request (none twice), and -verify passes at teardown.
// CHAOS_SEED replays the monkey's and the clients' choices (not the timing).
func TestChaos(t *testing.T) {
	// Not parallel: on two cores another stack would change the chaos.
	seed := chaosSeed(t)
	s := newStack(t)
	c := &chaos{t: t, s: s, g: string(s.Gateway), stock: map[string]int{}, outcomes: map[string]int{}}
	c.setup()

	ctx, stop := context.WithTimeout(context.Background(), chaosLoad)
	defer stop()
	var wg sync.WaitGroup
	for i := range chaosWorkers {
		r := rand.New(rand.NewPCG(seed, uint64(i+1)))
		wg.Go(func() { c.work(ctx, r) })
	}
	begin := time.Now()
	rounds := monkey(ctx, s, rand.New(rand.NewPCG(seed, 0)))
	wg.Wait()
	t.Logf("chaos for %v: %d rounds of kills: %s", time.Since(begin).Round(time.Millisecond), len(rounds), strings.Join(rounds, ", "))
	t.Logf("answers: %s", c.summary())
	if t.Failed() {
		return
	}

	s.waitReady(victims...)
	c.stockConverges(60 * time.Second)
	c.mailsSentOnce()
}

// chaosSeed is CHAOS_SEED, or a new seed; the log says which.
func chaosSeed(t *testing.T) uint64 {
	seed := rand.Uint64()
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("chaos seed %d (CHAOS_SEED=%d replays it)", seed, seed)
	return seed
}

// between is a random duration from lo to hi.
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// monkey kills a random victim with SIGKILL, starts it again after a short
// pause and waits until it is ready, over and over until ctx is done. It
// returns with every victim running and ready, and what it did, one entry
// a round.
//
// One victim at a time: two containers down at once may come back with each
// other's addresses (Docker gives a starting container the lowest free
// one), and a peer that resolved the old name to that address meanwhile
// keeps its connection to the wrong service (msg answering "no route POST
// /orders"). That is Docker's, not the shop's.
func monkey(ctx context.Context, s *stack, r *rand.Rand) (rounds []string) {
	begin := time.Now()
	for !s.t.Failed() {
		select {
		case <-ctx.Done():
			return rounds
		case <-time.After(between(r, 300*time.Millisecond, 2500*time.Millisecond)):
		}
		victim, at := victims[r.IntN(len(victims))], time.Since(begin)
		s.Kill(victim)
		time.Sleep(between(r, 200*time.Millisecond, 2*time.Second))
		s.Start(victim)
		rounds = append(rounds, fmt.Sprintf("%.1fs %s", at.Seconds(), victim))
	}
	return rounds
}

// chaos is what the clients did, as far as they know: the shop may hold a
// bit more (a create that committed but was answered 503, then sent again),
// so the checks read the shop itself.
type chaos struct {
	t         *testing.T
	s         *stack
	g         string // the gateway's URL
	mu        sync.Mutex
	customers []string
	stock     map[string]int // product id → the amount its inventory was created with
	products  []string       // those with an inventory
	orders    []order        // created, live or deleted since
	billings  []billing
	outcomes  map[string]int // "POST /orders 409" → how often
}

type order struct{ id, customer string }

type billing struct{ id, order string }

// setup creates some customers and products with stock before the chaos,
// one product scarce, so that orders run out of it.
func (c *chaos) setup() {
	r := rand.New(rand.NewPCG(1, 1))
	for range 3 {
		c.createCustomers(r)
	}
	for i := range 8 {
		c.createProduct(r, 300)
		if i == 0 {
			c.createProduct(r, 30)
		}
	}
	if c.t.Failed() {
		c.t.FailNow()
	}
}

// work sends random commands until ctx is done, chaosOps at most, or the
// test failed.
func (c *chaos) work(ctx context.Context, r *rand.Rand) {
	for range chaosOps {
		if ctx.Err() != nil || c.t.Failed() {
			return
		}
		switch n := r.IntN(100); {
		case n < 5:
			c.createCustomers(r)
		case n < 10:
			c.createProduct(r, 100+r.IntN(200))
		case n < 45:
			c.createOrder(r)
		case n < 60:
			c.updateOrder(r)
		case n < 70:
			c.deleteOrder(r)
		case n < 85:
			c.bill(r)
		default:
			c.pay(r)
		}
		time.Sleep(between(r, 20*time.Millisecond, 120*time.Millisecond))
	}
}

func (c *chaos) createCustomers(r *rand.Rand) {
	var body []map[string]string
	for i := range 1 + r.IntN(3) {
		body = append(body, map[string]string{"name": fmt.Sprintf("Chaos %d", i), "email": fmt.Sprintf("chaos-%d@example.com", r.Uint32())})
	}
	var ids []string
	if c.command("POST", "/customers", body, &ids) == http.StatusOK {
		c.mu.Lock()
		c.customers = append(c.customers, ids...)
		c.mu.Unlock()
	}
}

// createProduct creates a product and its inventory of amount pieces. A
// 409 on the inventory is its own first try, which committed but was
// answered 503.
func (c *chaos) createProduct(r *rand.Rand, amount int) {
	var ids []string
	if c.command("POST", "/product", map[string]any{"name": "Chaos", "price": 100 + r.IntN(900)}, &ids) != http.StatusOK {
		return
	}
	switch c.command("POST", "/inventory", map[string]any{"product_id": ids[0], "amount": amount}, nil, http.StatusConflict) {
	case http.StatusOK, http.StatusConflict:
		c.mu.Lock()
		c.stock[ids[0]] = amount
		c.products = append(c.products, ids[0])
		c.mu.Unlock()
	}
}

// pieces is 1 to 4 random products with stock (a product twice is two pieces).
func (c *chaos) pieces(r *rand.Rand) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for range 1 + r.IntN(4) {
		out = append(out, c.products[r.IntN(len(c.products))])
	}
	return out
}

// someOrder is a random order the clients created, maybe deleted since;
// its id is "" while there is none.
func (c *chaos) someOrder(r *rand.Rand) order {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.orders) == 0 {
		return order{}
	}
	return c.orders[r.IntN(len(c.orders))]
}

// createOrder orders 1 to 4 pieces for a random customer: 409 when out of
// stock.
func (c *chaos) createOrder(r *rand.Rand) {
	c.mu.Lock()
	customer := c.customers[r.IntN(len(c.customers))]
	c.mu.Unlock()
	var ids []string
	if c.command("POST", "/orders", map[string]any{"customer_id": customer, "product_ids": c.pieces(r)}, &ids, http.StatusConflict) == http.StatusOK {
		c.mu.Lock()
		c.orders = append(c.orders, order{id: ids[0], customer: customer})
		c.mu.Unlock()
	}
}

// updateOrder changes an order's products: 404 once deleted, 409 once
// billed or out of stock.
func (c *chaos) updateOrder(r *rand.Rand) {
	if o := c.someOrder(r); o.id != "" {
		c.command("PUT", "/order/"+o.id, map[string]any{"customer_id": o.customer, "product_ids": c.pieces(r)}, nil, http.StatusNotFound, http.StatusConflict)
	}
}

// deleteOrder deletes an order: 404 once deleted, 409 once billed.
func (c *chaos) deleteOrder(r *rand.Rand) {
	if o := c.someOrder(r); o.id != "" {
		c.command("DELETE", "/order/"+o.id, nil, nil, http.StatusNotFound, http.StatusConflict)
	}
}

// bill creates an order's billing: 404 once deleted, 409 once billed.
func (c *chaos) bill(r *rand.Rand) {
	o := c.someOrder(r)
	if o.id == "" {
		return
	}
	var ids []string
	if c.command("POST", "/billing", map[string]any{"order_id": o.id}, &ids, http.StatusNotFound, http.StatusConflict) == http.StatusOK {
		c.mu.Lock()
		c.billings = append(c.billings, billing{id: ids[0], order: o.id})
		c.mu.Unlock()
	}
}

// pay sets a random billing done (again, maybe): 404 if its order was
// deleted meanwhile.
func (c *chaos) pay(r *rand.Rand) {
	c.mu.Lock()
	var b billing
	if len(c.billings) > 0 {
		b = c.billings[r.IntN(len(c.billings))]
	}
	c.mu.Unlock()
	if b.id != "" {
		c.command("PUT", "/billing/"+b.id, map[string]any{"order_id": b.order, "done": true}, nil, http.StatusNotFound)
	}
}

// command sends a command through the gateway until it has an answer that
// chaos did not cause: a connection error, a timeout, a 503 (or a 409 while
// its first try still runs) is sent again with the same Idempotency-Key, for
// up to a minute. It wants 200 or one of also, each with a JSON error, and
// decodes a 200's answer into out. It answers the status, 0 after a failure.
func (c *chaos) command(method, path string, body, out any, also ...int) int {
	header := http.Header{"Idempotency-Key": {uuid.NewString()}}
	deadline := time.Now().Add(time.Minute)
	pause := 50 * time.Millisecond
	for {
		status, _, data, err := platformtest.SendWith(method, c.g+path, body, header)
		c.count(method, path, status, err)
		switch {
		case err == nil && status == http.StatusOK:
			if out != nil {
				if err := json.Unmarshal(data, out); err != nil {
					c.t.Errorf("%s %s: 200 %s: %v", method, path, data, err)
					return 0
				}
			}
			return status
		case err == nil && !isJSONError(string(data)):
			c.t.Errorf("%s %s: %d without a JSON error: %q", method, path, status, data)
			return 0
		case err == nil && status != http.StatusServiceUnavailable && !(status == http.StatusConflict && strings.Contains(string(data), "still running")):
			// A 404 is of something deleted, never of a route that a
			// request sent to the wrong service would miss.
			if !slices.Contains(also, status) || strings.Contains(string(data), `"no route`) {
				c.t.Errorf("%s %s: %d %s", method, path, status, data)
				return 0
			}
			return status
		case time.Now().After(deadline):
			c.t.Errorf("%s %s: no answer but %d %s (%v) for a minute", method, path, status, data, err)
			return 0
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
}

// count counts an answer by route ("/order/{id}") and status (0: none).
func (c *chaos) count(method, path string, status int, err error) {
	route, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if err != nil {
		status = 0
	}
	c.mu.Lock()
	c.outcomes[fmt.Sprintf("%s /%s %d", method, route, status)]++
	c.mu.Unlock()
}

func (c *chaos) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, n := range c.outcomes {
		out = append(out, fmt.Sprintf("%s ×%d", k, n))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// stockConverges waits until, for every product, the stock left plus the
// pieces the live orders hold is what was put in, and the reservations are
// exactly the live orders' pieces.
func (c *chaos) stockConverges(within time.Duration) {
	t := c.t
	t.Helper()
	begin := time.Now()
	for {
		diff := c.stockDiff()
		if diff == "" {
			t.Logf("stock converged %v after the chaos", time.Since(begin).Round(time.Millisecond))
			return
		}
		if time.Since(begin) > within {
			t.Fatalf("stock not converged %v after the chaos: %s", within, diff)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// stockDiff says how the stock is off, "" when it adds up.
func (c *chaos) stockDiff() string {
	t := c.t
	held, orders := map[string]int{}, map[string][]string{}
	for _, o := range listOf(t, c.g+"/orders") {
		var ps []string
		for _, p := range o["product_ids"].([]any) {
			ps = append(ps, p.(string))
			held[p.(string)]++
		}
		orders[o["id"].(string)] = ps
	}
	left := map[string]int{}
	for _, inv := range listOf(t, c.g+"/inventory") {
		left[inv["product_id"].(string)] = int(inv["amount"].(float64))
	}
	var diffs []string
	for p, put := range c.stock {
		if left[p]+held[p] != put {
			diffs = append(diffs, fmt.Sprintf("product %s: %d in stock + %d held by live orders, but %d put in", p, left[p], held[p], put))
		}
	}
	if len(left) != len(c.stock) {
		diffs = append(diffs, fmt.Sprintf("%d inventories, but %d created", len(left), len(c.stock)))
	}
	reservations := c.reservations()
	for id, ps := range reservations {
		if want, live := orders[id]; !live || !sameItems(ps, want) {
			diffs = append(diffs, fmt.Sprintf("reservation of %s holds %v, its order (live %t) %v", id, ps, live, want))
		}
	}
	for id, ps := range orders {
		if _, ok := reservations[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("order %s has no reservation of %v", id, ps))
		}
	}
	if len(diffs) > 5 {
		return fmt.Sprintf("%s; and %d more", strings.Join(firstOf(diffs), "; "), len(diffs)-5)
	}
	return strings.Join(diffs, "; ")
}

// reservations are the reservations in the inventory's cache, by order id,
// read through Redis as ops.
func (c *chaos) reservations() map[string][]string {
	ctx := context.Background()
	ids, err := c.s.Redis().SMembers(ctx, "{inventory}:reservation_ids").Result()
	if err != nil {
		c.t.Fatalf("reservation ids: %v", err)
	}
	out := map[string][]string{}
	for _, id := range ids {
		if out[id], err = c.s.Redis().LRange(ctx, "{inventory}:reservation_entity:"+id+":product_ids", 0, -1).Result(); err != nil {
			c.t.Fatalf("reservation %s: %v", id, err)
		}
	}
	return out
}

// sameItems says whether a and b hold the same items, in any order.
func sameItems(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func listOf(t *testing.T, url string) []map[string]any {
	t.Helper()
	var out []map[string]any
	platformtest.JSON(t, "GET", url, nil, http.StatusOK, &out)
	return out
}

// mailsSentOnce waits until crm and billing have nothing left to do, then
// checks the mails against the streams: one welcome per customer created,
// one thank-you and one payment request per order created (live or deleted
// since), one receipt per billing done of a live order, and no key twice.
func (c *chaos) mailsSentOnce() {
	t, s := c.t, c.s
	t.Helper()
	s.settled(s.Admin+"/ops/crm/stats", 60*time.Second)
	s.settled(s.Admin+"/ops/billing/stats", 60*time.Second)

	want := map[string]bool{}
	for _, id := range c.created("customer") {
		want[id+":welcome"] = true
	}
	for _, id := range c.created("order") {
		want[id+":thank-you"], want[id+":payment-request"] = true, true
	}
	live := map[string]bool{}
	for _, o := range listOf(t, c.g+"/orders") {
		live[o["id"].(string)] = true
	}
	receiptOK := map[string]bool{} // a billing whose order is gone may have none
	orphans := 0
	for _, b := range listOf(t, c.g+"/billings") {
		if !live[b["order_id"].(string)] {
			orphans++
		}
		if b["done"] == true {
			key := b["id"].(string) + ":receipt"
			want[key] = live[b["order_id"].(string)]
			receiptOK[key] = true
		}
	}

	sent := map[string]int{}
	for _, m := range mails(t, s.Gateway) {
		sent[m.Key]++
	}
	var twice, missing, unexpected []string
	for key, n := range sent {
		switch {
		case n > 1:
			twice = append(twice, key)
		case !want[key] && !receiptOK[key]:
			unexpected = append(unexpected, key)
		}
	}
	for key, w := range want {
		if w && sent[key] == 0 {
			missing = append(missing, key)
		}
	}
	t.Logf("%d mails sent, %d expected; %d billings of an order deleted since", len(sent), len(want), orphans)
	if len(twice)+len(missing)+len(unexpected) > 0 {
		t.Fatalf("mails: %d keys sent twice %q, %d missing %q, %d unexpected %q",
			len(twice), firstOf(twice), len(missing), firstOf(missing), len(unexpected), firstOf(unexpected))
	}
}

// firstOf is the first few of a list, for a message.
func firstOf(l []string) []string {
	slices.Sort(l)
	return l[:min(len(l), 5)]
}

// created answers the ids of the events that created an entity of a type
// ("customer_created"), as mails' keys begin with them, and checks that
// every entity the clients were answered is among the created.
func (c *chaos) created(kind string) []string {
	entries, err := c.s.Redis().XRange(context.Background(), "events:{"+kind+"}", "-", "+").Result()
	if err != nil {
		c.t.Fatalf("events:{%s}: %v", kind, err)
	}
	var events []string
	entities := map[string]bool{}
	for _, e := range entries {
		if e.Values["type"] == kind+"_created" {
			events = append(events, e.Values["event_id"].(string))
			entities[e.Values["entity_id"].(string)] = true
		}
	}
	c.mu.Lock()
	answered := c.customers
	if kind == "order" {
		answered = nil
		for _, o := range c.orders {
			answered = append(answered, o.id)
		}
	}
	c.mu.Unlock()
	for _, id := range answered {
		if !entities[id] {
			c.t.Fatalf("%s %s was answered but has no %s_created event", kind, id, kind)
		}
	}
	return events
}
