package main

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
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

const maxDeliveries = 3

// start runs billing, mailing to a peer that stands in for msg.
func start(t *testing.T) (*platformtest.MailPeer, *platform.App, *platformtest.Server) {
	p := platformtest.NewMailPeer(t)
	cfg := config{MsgURL: p.URL, Consuming: platform.Consuming{ConsumerName: "billing-1",
		ClaimIdle: 50 * time.Millisecond, MaxDeliveries: maxDeliveries, Batch: 50}}
	app, srv := platformtest.Start(t, "billing", platformtest.Config(t), cfg, wire)
	return p, app, srv
}

// order writes a customer, a product and an order of theirs.
func order(t *testing.T, cache *entitycache.Cache, email string) (customerID string, e eventstore.Event) {
	t.Helper()
	c := platformtest.Created(t, cache, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: email})
	p := platformtest.Created(t, cache, shop.Products.Kind, shop.Product{Name: "Apple", Price: 385})
	return c.EntityID, platformtest.Created(t, cache, shop.Orders.Kind, shop.Order{CustomerID: c.EntityID, ProductIDs: []string{p.EntityID, p.EntityID}})
}

type billing struct {
	ID      string `json:"id"`
	OrderID string `json:"order_id"`
	Done    bool   `json:"done"`
}

func TestBillingLifecycle(t *testing.T) {
	t.Parallel()
	_, app, srv := start(t)
	_, o1 := order(t, app.Cache, "ada@example.com")
	_, o2 := order(t, app.Cache, "bob@example.com")

	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/billing", map[string]any{"order_id": o1.EntityID}, 200, &ids)
	var more []string
	platformtest.JSON(t, "POST", srv.URL+"/billings", []map[string]any{{"order_id": o2.EntityID, "done": true}}, 200, &more)
	if len(ids) != 1 || ids[0] != shop.BillingID(o1.EntityID) || len(more) != 1 {
		t.Fatalf("ids %v %v", ids, more)
	}
	var got billing
	platformtest.JSON(t, "GET", srv.URL+"/billing/"+ids[0], nil, 200, &got)
	if got != (billing{ID: ids[0], OrderID: o1.EntityID}) {
		t.Fatalf("billing %+v", got)
	}
	var ok bool
	platformtest.JSON(t, "PUT", srv.URL+"/billing/"+ids[0], map[string]any{"order_id": o1.EntityID, "done": true}, 200, &ok)
	platformtest.JSON(t, "GET", srv.URL+"/billings/"+ids[0], nil, 200, &got)
	if !ok || !got.Done {
		t.Fatalf("after PUT: %+v", got)
	}
	var all []billing
	platformtest.JSON(t, "GET", srv.URL+"/billings", nil, 200, &all)
	if len(all) != 2 || !all[0].Done || !all[1].Done {
		t.Fatalf("billings %+v", all)
	}
	platformtest.JSON(t, "DELETE", srv.URL+"/billing/"+more[0], nil, 200, &ok)
	platformtest.Rejected(t, "GET", srv.URL+"/billings/"+more[0], nil, 404)
	// Deleted, the order's billing may be created again, under the same id.
	platformtest.JSON(t, "POST", srv.URL+"/billing", map[string]any{"order_id": o2.EntityID}, 200, &ids)
	if ids[0] != more[0] {
		t.Fatalf("billing of the order created again as %s, want %s", ids[0], more[0])
	}
}

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	t.Parallel()
	_, app, srv := start(t)
	_, billed := order(t, app.Cache, "ada@example.com")
	_, other := order(t, app.Cache, "bob@example.com")
	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/billing", map[string]any{"order_id": billed.EntityID}, 200, &ids)
	id, unknown := ids[0], uuid.NewString()
	cases := []platformtest.BadRequest{
		platformtest.Bad("malformed JSON", "POST", "/billing", `{"order_id": `, 400),
		platformtest.Bad("empty body", "POST", "/billing", ``, 400),
		platformtest.Bad("not an object", "POST", "/billing", `"x"`, 400),
		platformtest.Bad("empty list", "POST", "/billings", `[]`, 400),
		platformtest.Bad("missing order_id", "POST", "/billing", `{"done": true}`, 400),
		platformtest.Bad("empty order_id", "POST", "/billing", `{"order_id": ""}`, 400),
		platformtest.Bad("non-UUID order_id", "POST", "/billing", `{"order_id": "42"}`, 400),
		platformtest.Bad("order_id not a string", "POST", "/billing", `{"order_id": 42}`, 400),
		platformtest.Bad("done not a bool", "POST", "/billing", `{"order_id": "`+other.EntityID+`", "done": "yes"}`, 400),
		platformtest.Bad("unknown field", "POST", "/billing", `{"order_id": "`+other.EntityID+`", "amount": 3}`, 400),
		platformtest.Bad("unknown order", "POST", "/billing", `{"order_id": "`+unknown+`"}`, 404),
		platformtest.Bad("second billing of an order", "POST", "/billing", `{"order_id": "`+billed.EntityID+`"}`, 409),
		platformtest.Bad("one bad item spoils the batch", "POST", "/billings", `[{"order_id": "`+other.EntityID+`"}, {"order_id": "`+unknown+`"}]`, 404),
		platformtest.Bad("PUT another order", "PUT", "/billing/"+id, `{"order_id": "`+other.EntityID+`"}`, 400),
		platformtest.Bad("PUT unknown order", "PUT", "/billing/"+shop.BillingID(unknown), `{"order_id": "`+unknown+`"}`, 404),
		platformtest.Bad("PUT unknown billing", "PUT", "/billing/"+shop.BillingID(other.EntityID), `{"order_id": "`+other.EntityID+`"}`, 404),
		platformtest.Bad("PUT non-UUID id", "PUT", "/billing/42", `{"order_id": "`+billed.EntityID+`"}`, 400),
		platformtest.Bad("PUT without order_id", "PUT", "/billing/"+id, `{"done": true}`, 400),
		platformtest.Bad("DELETE unknown id", "DELETE", "/billing/"+unknown, nil, 404),
		platformtest.Bad("DELETE non-UUID id", "DELETE", "/billings/x", nil, 400),
		platformtest.Bad("GET non-UUID id", "GET", "/billing/x", nil, 400),
		platformtest.Bad("wrong method", "PATCH", "/billing/"+id, `{}`, 405),
	}
	platformtest.RejectAll(t, app, srv.URL, "billing", cases)
	var got billing
	platformtest.JSON(t, "GET", srv.URL+"/billing/"+id, nil, 200, &got)
	if got != (billing{ID: id, OrderID: billed.EntityID}) {
		t.Fatalf("bad input changed the billing: %+v", got)
	}
}

func TestPaymentRequestAndReceiptMails(t *testing.T) {
	t.Parallel()
	p, app, srv := start(t)
	_, o := order(t, app.Cache, "ada@example.com")
	platformtest.JSON(t, "POST", srv.URL+"/billing", map[string]any{"order_id": o.EntityID}, 200, nil)
	redistest.Eventually(t, 10*time.Second, "payment request", func() bool { return len(p.To("ada@example.com")) == 1 })
	// Not done yet: no receipt. Done: the receipt, once, however often done
	// is set again, in the trace of the request that set it. Events of one
	// stream are handled in order, so once the receipt is there, the
	// creation was handled and mailed nothing.
	bill := shop.BillingID(o.EntityID)
	trace := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tp := range []string{trace, ""} {
		status, _, body, err := platformtest.SendWith("PUT", srv.URL+"/billing/"+bill, map[string]any{"order_id": o.EntityID, "done": true}, http.Header{"Traceparent": {tp}})
		if err != nil || status != 200 {
			t.Fatalf("PUT done: %d %s %v", status, body, err)
		}
	}
	redistest.Eventually(t, 10*time.Second, "receipt", func() bool { return len(p.To("ada@example.com")) == 2 })

	want := map[string]string{
		o.ID + ":payment-request": "Please pay for your order " + o.EntityID + ": total 7.70.",
		bill + ":receipt":         "Receipt for your order " + o.EntityID + ": billing " + bill + ", total 7.70, paid.",
	}
	got := p.To("ada@example.com")
	for _, m := range got {
		if want[m.Key] != m.Msg {
			t.Errorf("mail %q: %q, want %q", m.Key, m.Msg, want[m.Key])
		}
		if m.Key == bill+":receipt" && platformtest.TraceID(m.Trace) != platformtest.TraceID(trace) {
			t.Errorf("receipt carried trace %q, want one of the trace of the PUT that set done, %q", m.Trace, trace)
		}
	}
	var st eventstore.ConsumerStats
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/stats", nil, 200, &st)
	if st.Group != "billing" || st.Consumer != "billing-1" || st.Counters.Succeeded < 2 || len(st.Streams) != 2*app.Config.Partitions {
		t.Fatalf("stats %+v", st)
	}
	var dead []eventstore.DeadLetter
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/deadletters", nil, 200, &dead)
	if dead == nil || len(dead) != 0 {
		t.Fatalf("dead letters %+v", dead)
	}
	platformtest.Rejected(t, "POST", srv.Admin.URL+"/ops/deadletters/customer/1-0/replay", nil, 400)
	platformtest.Rejected(t, "POST", srv.Admin.URL+"/ops/deadletters/"+app.Store.FirstPartition("order")+"/1-0/replay", nil, 404)
}

// A billing created done gets its receipt at once; a product deleted since
// the order is left out of the total, and the mail says so.
func TestReceiptOfABillingCreatedDoneLeavesOutAProductGone(t *testing.T) {
	t.Parallel()
	p, app, srv := start(t)
	c := platformtest.Created(t, app.Cache, shop.Customers.Kind, shop.Customer{Name: "Bo", Email: "bo@example.com"})
	tea := platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "Tea", Price: 350})
	gone := shop.Product{ID: uuid.NewString(), Name: "Cake", Price: 420}
	made := platformtest.Created(t, app.Cache, shop.Products.Kind, gone)
	if _, err := app.Cache.Commit(t.Context(), shop.Products.Change(shop.ProductDeleted, gone, made.Version)); err != nil {
		t.Fatal(err)
	}
	o := platformtest.Created(t, app.Cache, shop.Orders.Kind, shop.Order{CustomerID: c.EntityID, ProductIDs: []string{tea.EntityID, gone.ID, tea.EntityID}})
	platformtest.JSON(t, "POST", srv.URL+"/billing", map[string]any{"order_id": o.EntityID, "done": true}, 200, nil)
	redistest.Eventually(t, 10*time.Second, "payment request and receipt", func() bool { return len(p.To("bo@example.com")) == 2 })
	bill := shop.BillingID(o.EntityID)
	without := ", without product " + gone.ID + ", no longer sold"
	want := map[string]string{
		o.ID + ":payment-request": "Please pay for your order " + o.EntityID + ": total 7.00" + without + ".",
		bill + ":receipt":         "Receipt for your order " + o.EntityID + ": billing " + bill + ", total 7.00" + without + ", paid.",
	}
	for _, m := range p.To("bo@example.com") {
		if want[m.Key] != m.Msg {
			t.Errorf("mail %q: %q, want %q", m.Key, m.Msg, want[m.Key])
		}
	}
}

func TestReceiptForAnUnknownOrderIsSkipped(t *testing.T) {
	t.Parallel()
	p, app, srv := start(t)
	platformtest.Created(t, app.Cache, shop.Billings.Kind, shop.Billing{OrderID: uuid.NewString(), Done: true})
	var st eventstore.ConsumerStats
	redistest.Eventually(t, 10*time.Second, "billing of no order skipped", func() bool {
		platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/stats", nil, 200, &st)
		return st.Counters.Skipped == 1
	})
	var dead []eventstore.DeadLetter
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/deadletters", nil, 200, &dead)
	if len(dead) != 0 || st.Counters.Failed != 0 || p.Count() != 0 {
		t.Fatalf("dead letters %+v, counters %+v, %d mails", dead, st.Counters, p.Count())
	}
}

// A batch of billings whose orders' billings live in two partitions commits
// one partition after the other. Raced by a billing of its second order, it
// may fail after its first partition committed: then its error says what it
// wrote, and the batch sent again with its Idempotency-Key answers the same.
func TestABatchAcrossPartitionsThatFailsSaysWhatItWrote(t *testing.T) {
	t.Parallel()
	p := platformtest.NewMailPeer(t)
	base := platformtest.Config(t)
	base.Partitions = 4
	app, srv := platformtest.Start(t, "billing", base, config{MsgURL: p.URL, Consuming: platform.Consuming{ConsumerName: "billing-1",
		ClaimIdle: time.Minute, MaxDeliveries: maxDeliveries, Batch: 50}}, wire)
	type answer struct {
		status int
		body   []byte
	}
	partial := 0
	for try := range 60 {
		_, o1 := order(t, app.Cache, "ada@example.com")
		var o2 eventstore.Event
		for o2.EntityID == "" || app.Store.PartitionOf("billing", shop.BillingID(o2.EntityID)) == app.Store.PartitionOf("billing", shop.BillingID(o1.EntityID)) {
			_, o2 = order(t, app.Cache, "bob@example.com")
		}
		key := http.Header{platform.IdempotencyHeader: {uuid.NewString()}}
		batch := []map[string]any{{"order_id": o1.EntityID}, {"order_id": o2.EntityID}}
		var first answer
		done := make(chan struct{})
		go func() {
			defer close(done)
			platformtest.Do(t, "POST", srv.URL+"/billings", []map[string]any{{"order_id": o2.EntityID}})
		}()
		first.status, _, first.body, _ = platformtest.SendWith("POST", srv.URL+"/billings", batch, key)
		<-done
		var again answer
		again.status, _, again.body, _ = platformtest.SendWith("POST", srv.URL+"/billings", batch, key)
		b1, _, err := shop.Billings.Get(t.Context(), app.Cache, shop.BillingID(o1.EntityID))
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error   string   `json:"error"`
			Written []string `json:"written"`
		}
		json.Unmarshal(first.body, &e)
		switch {
		case first.status == http.StatusOK:
			if b1 == nil {
				t.Fatalf("try %d: %s, and no billing of the first order", try, first.body)
			}
		case first.status != http.StatusConflict || e.Error == "":
			t.Fatalf("try %d: %d %s, want 200 or a 409 in JSON", try, first.status, first.body)
		case (b1 != nil) != slices.Contains(e.Written, shop.BillingID(o1.EntityID)):
			t.Fatalf("try %d: %s, and the billing of the first order is %v", try, first.body, b1)
		}
		if len(e.Written) > 0 {
			partial++
		}
		if again.status != first.status || (first.status == http.StatusConflict && string(again.body) != string(first.body)) {
			t.Fatalf("try %d: sent again with its key, %d %s; the first answer was %d %s", try, again.status, again.body, first.status, first.body)
		}
	}
	t.Logf("%d of 60 batches failed after writing part of them", partial)
}
