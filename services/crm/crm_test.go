package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func testConfig(t *testing.T, p *platformtest.MailPeer) (platform.Config, config) {
	return platformtest.Config(t), config{MsgURL: p.URL, Consuming: platform.Consuming{ConsumerName: "crm-1",
		ClaimIdle: 50 * time.Millisecond, MaxDeliveries: 3, Batch: 50}}
}

// writer writes events as the owning services do, on the keys of base, with
// the trace of the context.
func writer(t *testing.T, base platform.Config) *entitycache.Cache {
	rdb, _ := redistest.Client(t)
	return entitycache.New(eventstore.New(rdb, base.KeyPrefix, eventstore.WithMeta(platform.TraceMeta), eventstore.WithPartitions(base.Partitions)))
}

func commit(t *testing.T, ctx context.Context, cache *entitycache.Cache, ch entitycache.Change) eventstore.Event {
	t.Helper()
	events, err := cache.Commit(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	return events[0]
}

func TestMailsForCustomerAndOrderEvents(t *testing.T) {
	t.Parallel()
	p := platformtest.NewMailPeer(t)
	base, cfg := testConfig(t, p)
	platformtest.Start(t, "crm", base, cfg, wire)
	w := writer(t, base)

	trace := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	welcome := commit(t, platform.WithTrace(t.Context(), trace), w, shop.Customers.Change(shop.CustomerCreated,
		shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}, eventstore.NoEntity))
	apple := platformtest.Created(t, w, shop.Products.Kind, shop.Product{Name: "Apple", Price: 150})
	pear := platformtest.Created(t, w, shop.Products.Kind, shop.Product{Name: "Pear", Price: 2})
	order := platformtest.Created(t, w, shop.Orders.Kind, shop.Order{CustomerID: welcome.EntityID, ProductIDs: []string{apple.EntityID, pear.EntityID, apple.EntityID}})
	redistest.Eventually(t, 10*time.Second, "welcome and thank-you mailed", func() bool { return len(p.To("ada@example.com")) == 2 })

	ada := shop.Customer{ID: welcome.EntityID, Name: "Ada", Email: "ada@example.com"}
	updated := commit(t, t.Context(), w, shop.Customers.Change(shop.CustomerUpdated, ada, welcome.Version))
	goodbye := commit(t, t.Context(), w, shop.Customers.Change(shop.CustomerDeleted, ada, updated.Version))
	// Events of one stream are handled in order: once the goodbye is there,
	// the update was handled too, and mailed nothing.
	redistest.Eventually(t, 10*time.Second, "goodbye mailed", func() bool { return len(p.To("ada@example.com")) == 3 })

	want := map[string]string{
		welcome.ID + ":welcome": "Welcome to OrderShop, Ada!",
		order.ID + ":thank-you": "Thank you for your order " + order.EntityID + ": 2 x Apple, 1 x Pear.",
		goodbye.ID + ":goodbye": "Goodbye, Ada: your OrderShop account is closed.",
	}
	for _, m := range p.To("ada@example.com") {
		if want[m.Key] != m.Msg {
			t.Errorf("mail %q: %q, want %q", m.Key, m.Msg, want[m.Key])
		}
		if m.Key == welcome.ID+":welcome" && platformtest.TraceID(m.Trace) != platformtest.TraceID(trace) {
			t.Errorf("welcome carried trace %q, want one of the event's trace %q", m.Trace, trace)
		}
	}
	if n := p.Count(); n != 3 {
		t.Errorf("%d mails in all, want 3", n)
	}
}

func TestStoppedCRMCatchesUp(t *testing.T) {
	t.Parallel()
	p := platformtest.NewMailPeer(t)
	base, cfg := testConfig(t, p)
	w := writer(t, base)
	_, _, stop := platformtest.Stoppable(t, "crm", base, cfg, wire)
	platformtest.Created(t, w, shop.Customers.Kind, shop.Customer{Name: "First", Email: "first@example.com"})
	redistest.Eventually(t, 10*time.Second, "first welcome", func() bool { return p.Count() == 1 })
	stop()

	keys := map[string]string{} // address -> key of its welcome
	for i := range 50 {
		addr := fmt.Sprintf("c%d@example.com", i)
		e := platformtest.Created(t, w, shop.Customers.Kind, shop.Customer{Name: fmt.Sprint("C", i), Email: addr})
		keys[addr] = e.ID + ":welcome"
	}
	if n := p.Count(); n != 1 {
		t.Fatalf("%d mails while crm was stopped", n)
	}
	platformtest.Start(t, "crm", base, cfg, wire)
	redistest.Eventually(t, 10*time.Second, "50 welcomes after the restart", func() bool { return p.Count() == 51 })
	for addr, key := range keys {
		if got := p.To(addr); len(got) != 1 || got[0].Key != key || !strings.HasPrefix(got[0].Msg, "Welcome") {
			t.Fatalf("mails to %s: %+v, want one welcome with key %s", addr, got, key)
		}
	}
}

func TestFailingEventsAreDeadLetteredAndReplayed(t *testing.T) {
	t.Parallel()
	p := platformtest.NewMailPeer(t)
	base, cfg := testConfig(t, p)
	app, srv := platformtest.Start(t, "crm", base, cfg, wire)
	w := writer(t, base)

	poison, err := eventstore.NewEvent("customer_created", "customer", uuid.NewString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A JSON object, as Append takes no other, but not a customer.
	poison.Entity = json.RawMessage(`{"email": 5}`)
	if _, err := app.Store.Append(t.Context(), app.Store.PartitionOf("customer", poison.EntityID), eventstore.Record{Event: poison, Expected: eventstore.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	p.FailFor("stuck@example.com", true)
	stuck := platformtest.Created(t, w, shop.Customers.Kind, shop.Customer{Name: "Stuck", Email: "stuck@example.com"})
	platformtest.Created(t, w, shop.Customers.Kind, shop.Customer{Name: "Later", Email: "later@example.com"})
	redistest.Eventually(t, 10*time.Second, "later events flow", func() bool { return len(p.To("later@example.com")) == 1 })

	var dead []eventstore.DeadLetter
	redistest.Eventually(t, 10*time.Second, "two dead letters", func() bool {
		platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/deadletters", nil, 200, &dead)
		return len(dead) == 2
	})
	byEvent := map[string]eventstore.DeadLetter{}
	for _, d := range dead {
		if d.Stream != app.Store.PartitionOf("customer", fmt.Sprint(d.Values["entity_id"])) || d.Deliveries != cfg.MaxDeliveries || d.Error == "" || d.Consumer != "crm-1" {
			t.Fatalf("dead letter %+v", d)
		}
		byEvent[fmt.Sprint(d.Values["event_id"])] = d
	}
	if byEvent[poison.ID].Values["entity"] != `{"email": 5}` || !strings.Contains(byEvent[stuck.ID].Error, "mail server down") {
		t.Fatalf("dead letters %+v", byEvent)
	}
	var st eventstore.ConsumerStats
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/stats", nil, 200, &st)
	deadLetters := int64(0)
	for _, s := range st.Streams[:base.Partitions] { // the customer stream's
		deadLetters += s.Groups[0].DeadLetters
	}
	if !st.Running || st.Counters.DeadLettered != 2 || len(st.Streams) != 2*base.Partitions || deadLetters != 2 {
		t.Fatalf("stats %+v", st)
	}

	replay := func(d eventstore.DeadLetter) string {
		return srv.Admin.URL + "/ops/deadletters/" + strings.ReplaceAll(d.Stream, ":", "%3A") + "/" + d.ID + "/replay" // escaped, as the dashboard sends it
	}
	platformtest.Rejected(t, "POST", replay(byEvent[stuck.ID]), nil, 409)
	p.FailFor("stuck@example.com", false)
	var ok bool
	platformtest.JSON(t, "POST", replay(byEvent[stuck.ID]), nil, 200, &ok)
	if got := p.To("stuck@example.com"); !ok || len(got) != 1 || got[0].Key != stuck.ID+":welcome" {
		t.Fatalf("after replay: %v, mails %+v", ok, got)
	}
	if msg := platformtest.Rejected(t, "POST", replay(byEvent[poison.ID]), nil, 409); !strings.Contains(msg, "not a JSON object") {
		t.Fatalf("poison replay said %q", msg)
	}
	platformtest.Rejected(t, "POST", replay(byEvent[stuck.ID]), nil, 404)
	platformtest.Rejected(t, "POST", srv.Admin.URL+"/ops/deadletters/billing/"+byEvent[poison.ID].ID+"/replay", nil, 400)
	platformtest.Rejected(t, "POST", srv.Admin.URL+"/ops/deadletters/customer/nope/replay", nil, 400)
	platformtest.Rejected(t, "GET", replay(byEvent[poison.ID]), nil, 405)
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/deadletters", nil, 200, &dead)
	if len(dead) != 1 || dead[0].Values["event_id"] != poison.ID {
		t.Fatalf("dead letters after the replays: %+v", dead)
	}
}

func TestEventsThatCannotBeMailedAreErrors(t *testing.T) {
	t.Parallel()
	p := platformtest.NewMailPeer(t)
	base, cfg := testConfig(t, p)
	app, _ := platformtest.Start(t, "crm", base, cfg, wire)
	h := routes(mails{shop.MailerOf(app, p.URL)}).Handler()
	event := func(typ, entity string) eventstore.Event {
		e, _ := eventstore.NewEvent(typ, strings.Split(typ, "_")[0], uuid.NewString(), nil)
		e.Entity = json.RawMessage(entity)
		return e
	}
	cases := []struct {
		name  string
		event eventstore.Event
		fails bool
	}{
		{"entity not JSON", event("customer_created", `{"email":`), true},
		{"entity null", event("customer_created", `null`), true},
		{"entity a list", event("customer_deleted", `[]`), true},
		{"customer without email", event("customer_created", `{"name": "Ada"}`), true},
		{"email not a string", event("customer_created", `{"name": "Ada", "email": 5}`), true},
		{"order without customer", event("order_created", `{"product_ids": []}`), true},
		{"order of an unknown customer", event("order_created", `{"customer_id": "`+uuid.NewString()+`", "product_ids": []}`), true},
		{"customer update", event("customer_updated", `{"name": "Ada", "email": "ada@example.com"}`), false},
		{"order update", event("order_updated", `not json`), false},
		{"product created", event("product_created", `{"name": "Apple"}`), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := h(t.Context(), c.event); (err != nil) != c.fails {
				t.Fatalf("error %v, want one: %v", err, c.fails)
			}
		})
	}
	if n := p.Count(); n != 0 {
		t.Fatalf("%d mails sent", n)
	}
}

func TestMailsOfACustomerWhoIsGoneAreSkipped(t *testing.T) {
	t.Parallel()
	p := platformtest.NewMailPeer(t)
	base, cfg := testConfig(t, p)
	_, srv := platformtest.Start(t, "crm", base, cfg, wire)
	w := writer(t, base)
	gone := platformtest.Created(t, w, shop.Customers.Kind, shop.Customer{Name: "Gone", Email: "gone@example.com"})
	commit(t, t.Context(), w, shop.Customers.Change(shop.CustomerDeleted,
		shop.Customer{ID: gone.EntityID, Name: "Gone", Email: "gone@example.com"}, gone.Version))
	tea := platformtest.Created(t, w, shop.Products.Kind, shop.Product{Name: "Tea", Price: 1})
	platformtest.Created(t, w, shop.Orders.Kind, shop.Order{CustomerID: gone.EntityID, ProductIDs: []string{tea.EntityID}})
	platformtest.Created(t, w, shop.Customers.Kind, shop.Customer{Name: "Later", Email: "later@example.com"})
	redistest.Eventually(t, 10*time.Second, "later welcome", func() bool { return len(p.To("later@example.com")) == 1 })

	// Skipped and acked, the welcome too (its ack may follow its mail): on
	// every stream (partition) nothing pending.
	var st eventstore.ConsumerStats
	redistest.Eventually(t, 10*time.Second, "the thank-you skipped, every entry acked", func() bool {
		platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/stats", nil, 200, &st)
		for _, s := range st.Streams {
			if s.Groups[0].Pending != 0 {
				return false
			}
		}
		return st.Counters.Skipped == 1
	})
	var dead []eventstore.DeadLetter
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/deadletters", nil, 200, &dead)
	if len(dead) != 0 || st.Counters.Failed != 0 {
		t.Fatalf("dead letters %+v, stats %+v", dead, st)
	}
}

// With CONSUMER_WORKERS=8 crm has eight mails in flight at once, over as many
// connections to msg, and sends each once: msg here answers none until it
// holds eight.
func TestWorkersMailConcurrently(t *testing.T) {
	t.Parallel()
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	var mu sync.Mutex
	calls := map[string]int{} // key -> calls
	msg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m platformtest.Mail
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for top := most.Load(); n > top && !most.CompareAndSwap(top, n); top = most.Load() {
		}
		<-release
		mu.Lock()
		calls[m.Key]++
		mu.Unlock()
		platform.WriteJSON(w, http.StatusOK, map[string]any{"id": uuid.NewString(), "sent": true})
	}))
	t.Cleanup(msg.Close)
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open) // before msg.Close
	base := platformtest.Config(t)
	w := writer(t, base)
	var keys []string
	for i := range 100 { // enough entities that each of the 8 workers has some
		e := platformtest.Created(t, w, shop.Customers.Kind, shop.Customer{Name: fmt.Sprint("C", i), Email: fmt.Sprintf("c%d@example.com", i)})
		keys = append(keys, e.ID+":welcome")
	}
	platformtest.Start(t, "crm", base, config{MsgURL: msg.URL, Consuming: platform.Consuming{ConsumerName: "crm-1",
		ClaimIdle: time.Minute, MaxDeliveries: 3, Batch: 100, Workers: 8}}, wire)
	// Within crm's request timeout (5 s), so that no call was given up.
	redistest.Eventually(t, 4*time.Second, "eight mails in flight at once", func() bool { return inFlight.Load() == 8 })
	open()
	redistest.Eventually(t, 20*time.Second, "a welcome for each customer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == len(keys)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		if calls[k] != 1 {
			t.Errorf("%d calls for %s", calls[k], k)
		}
	}
	if most.Load() > 8 {
		t.Fatalf("%d mails in flight at once with 8 workers", most.Load())
	}
}
