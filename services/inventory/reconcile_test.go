package main

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// record commits an order event as the order service does.
func record(t *testing.T, app *platform.App, typ string, ord shop.Order, expected int64) eventstore.Event {
	t.Helper()
	events, err := app.Cache.Commit(t.Context(), shop.Orders.Change(typ, ord, expected))
	if err != nil {
		t.Fatal(err)
	}
	return events[0]
}

func held(t *testing.T, app *platform.App, order string) *shop.Reservation {
	t.Helper()
	res, _, err := shop.Reservations.Get(t.Context(), app.Cache, order)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// follow hands an event to the consumer's handler again, as a redelivery
// or a late retry does.
func follow(t *testing.T, app *platform.App, e eventstore.Event) error {
	t.Helper()
	var ord shop.Order
	if err := e.Decode(&ord); err != nil {
		t.Fatal(err)
	}
	return inventory{cache: app.Cache}.follow(t.Context(), e, ord)
}

// The reservation of an order follows its events, each once: an event handed
// again, or one older than the order, changes nothing.
func TestReservationsFollowTheOrderEventsOnce(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, 5)
	ord := shop.Order{ID: uuid.NewString(), CustomerID: uuid.NewString(), ProductIDs: []string{p[0], p[0]}}
	created := record(t, app, shop.OrderCreated, ord, eventstore.NoEntity)
	redistest.Eventually(t, 10*time.Second, "the created order's stock held", func() bool { return amount(t, url, p[0]) == 3 })
	if res := held(t, app, ord.ID); res == nil || res.OrderVersion != created.Version {
		t.Fatalf("reservation %+v, want one that followed version %d", res, created.Version)
	}

	ord.ProductIDs = []string{p[0]}
	updated := record(t, app, shop.OrderUpdated, ord, created.Version)
	redistest.Eventually(t, 10*time.Second, "the updated order's stock held", func() bool { return amount(t, url, p[0]) == 4 })
	before, _ := app.Store.Info(t.Context(), app.Store.FirstPartition("inventory"))
	for _, e := range []eventstore.Event{created, updated} {
		if err := follow(t, app, e); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := app.Store.Info(t.Context(), app.Store.FirstPartition("inventory")); after.Length != before.Length || amount(t, url, p[0]) != 4 {
		t.Fatalf("an old and a redelivered event wrote %d events, stock %d", after.Length-before.Length, amount(t, url, p[0]))
	}

	record(t, app, shop.OrderDeleted, ord, updated.Version)
	redistest.Eventually(t, 10*time.Second, "the deleted order's stock released", func() bool { return amount(t, url, p[0]) == 5 })
	// A stale create does not bring a deleted order's reservation back.
	if err := follow(t, app, created); err != nil || held(t, app, ord.ID) != nil || amount(t, url, p[0]) != 5 {
		t.Fatalf("a create after the delete: %v, held %+v, stock %d", err, held(t, app, ord.ID), amount(t, url, p[0]))
	}
}

// An order recorded without its reservation gets it from its event; when the
// stock was sold since, the delivery fails (it is retried, then
// dead-lettered) and the stock stays at what is left.
func TestAnOrderRecordedWithoutItsReservationGetsItOrFails(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, 2, 2)
	record(t, app, shop.OrderCreated, shop.Order{ID: uuid.NewString(), CustomerID: uuid.NewString(), ProductIDs: []string{p[0]}}, eventstore.NoEntity)
	redistest.Eventually(t, 10*time.Second, "the order's stock held", func() bool { return amount(t, url, p[1]) == 2 && amount(t, url, p[0]) == 1 })

	short := shop.Order{ID: uuid.NewString(), CustomerID: uuid.NewString(), ProductIDs: []string{p[1], p[1], p[1]}}
	e := record(t, app, shop.OrderCreated, short, eventstore.NoEntity)
	var out *shop.OutOfStockError
	if err := follow(t, app, e); !errors.As(err, &out) {
		t.Fatalf("following an order short of stock: %v, want out of stock", err)
	}
	redistest.Eventually(t, 10*time.Second, "the short order dead-lettered", func() bool {
		dls, _ := app.Store.DeadLetters(t.Context(), app.Store.PartitionOf(shop.Orders.StreamName(), short.ID), "inventory", 10)
		return len(dls) == 1
	})
	if amount(t, url, p[1]) != 2 || held(t, app, short.ID) != nil {
		t.Fatalf("stock %d, held %+v for an order short of stock", amount(t, url, p[1]), held(t, app, short.ID))
	}
}

// The sweeper sets reservations older than the grace to what their order
// holds: it releases those whose order never came and mends a swap left
// half done, and leaves younger ones and those that agree alone.
func TestTheSweeperSetsOldReservationsToTheirOrders(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, 10)
	inv := inventory{cache: app.Cache}
	orphan, swapped, kept := uuid.NewString(), uuid.NewString(), uuid.NewString()
	platformtest.JSON(t, "PUT", url+"/reservations/"+orphan, map[string]any{"product_ids": []string{p[0]}}, 200, nil)
	for _, id := range []string{swapped, kept} {
		record(t, app, shop.OrderCreated, shop.Order{ID: id, CustomerID: uuid.NewString(), ProductIDs: []string{p[0]}}, eventstore.NoEntity)
	}
	redistest.Eventually(t, 10*time.Second, "the orders followed", func() bool {
		s, k := held(t, app, swapped), held(t, app, kept)
		return s != nil && k != nil && s.OrderVersion == 1 && k.OrderVersion == 1
	})
	// An update that reserved but was never recorded.
	platformtest.JSON(t, "PUT", url+"/reservations/"+swapped, map[string]any{"product_ids": []string{p[0], p[0], p[0]}}, 200, nil)
	if amount(t, url, p[0]) != 5 {
		t.Fatalf("stock %d before sweeping, want 5", amount(t, url, p[0]))
	}

	if _, err := inv.sweepOnce(t.Context(), "", time.Hour); err != nil || amount(t, url, p[0]) != 5 {
		t.Fatalf("a sweep within the grace: %v, stock %d, want 5", err, amount(t, url, p[0]))
	}
	next, err := inv.sweepOnce(t.Context(), "", 0)
	if err != nil || next != "" {
		t.Fatalf("a sweep of all: next %q, %v", next, err)
	}
	if amount(t, url, p[0]) != 8 || held(t, app, orphan) != nil ||
		!slices.Equal(held(t, app, swapped).ProductIDs, []string{p[0]}) || !slices.Equal(held(t, app, kept).ProductIDs, []string{p[0]}) {
		t.Fatalf("after the sweep: stock %d, want 8; orphan %+v, swapped %+v", amount(t, url, p[0]), held(t, app, orphan), held(t, app, swapped))
	}
}

// The sweeper runs by itself every few seconds, bounded by its grace.
func TestTheSweeperReleasesAnOrphanAfterTheGrace(t *testing.T) {
	t.Parallel()
	cfg := config{Consuming: platform.Consuming{ConsumerName: "inventory-1", Batch: 50}, ReservationGrace: 300 * time.Millisecond}
	app, srv := platformtest.Start(t, "inventory", platformtest.Config(t), cfg, wire)
	product := platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "p", Price: 1}).EntityID
	platformtest.JSON(t, "POST", srv.URL+"/inventory", map[string]any{"product_id": product, "amount": 1}, 200, nil)
	platformtest.JSON(t, "PUT", srv.URL+"/reservations/"+uuid.NewString(), map[string]any{"product_ids": []string{product}}, 200, nil)
	redistest.Eventually(t, 10*time.Second, "the orphan released", func() bool { return amount(t, srv.URL, product) == 1 })
}

// A reservation waits for its order until the time the order service said
// it records the order by, whatever the grace: the order's append cannot
// land later (eventstore.AppendBy), so the sweeper never gives its stock to
// another order while it still may. Asked again for the same pieces with a
// later time, as a retry does, it waits longer, moving no stock.
func TestTheSweeperWaitsForTheTimeAnOrderIsRecordedBy(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, 1)
	inv := inventory{cache: app.Cache}
	order := uuid.NewString()
	reserve := func(by time.Time) {
		platformtest.JSON(t, "PUT", url+"/reservations/"+order,
			map[string]any{"product_ids": []string{p[0]}, "record_by": by.UnixMilli()}, 200, nil)
	}
	reserve(time.Now().Add(2 * time.Second))
	later := time.Now().Add(time.Minute)
	reserve(later)
	if r := held(t, app, order); r == nil || r.RecordBy != later.UnixMilli() || amount(t, url, p[0]) != 0 {
		t.Fatalf("reserved again with a later time: %+v, stock %d; want record_by %d, stock 0", r, amount(t, url, p[0]), later.UnixMilli())
	}
	reserve(time.Now()) // an earlier time keeps the later one
	if _, err := inv.sweepOnce(t.Context(), "", 0); err != nil || held(t, app, order) == nil || amount(t, url, p[0]) != 0 {
		t.Fatalf("a sweep with no grace before the time: %v, reservation %+v, stock %d; want it held", err, held(t, app, order), amount(t, url, p[0]))
	}
	if _, err := inv.sweepOnce(t.Context(), "", -2*time.Minute); err != nil || held(t, app, order) != nil || amount(t, url, p[0]) != 1 {
		t.Fatalf("a sweep past the time: %v, reservation %+v, stock %d; want it released", err, held(t, app, order), amount(t, url, p[0]))
	}
}

// A record_by that is no time, or too far ahead (it would hold the stock
// as long), is refused, and nothing is reserved.
func TestABadRecordByIsRefused(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, 1)
	for _, by := range []any{-1, time.Now().Add(time.Hour).UnixMilli(), "soon", 1.5} {
		order := uuid.NewString()
		platformtest.Rejected(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{p[0]}, "record_by": by}, 400)
		if held(t, app, order) != nil || amount(t, url, p[0]) != 1 {
			t.Fatalf("record_by %v reserved", by)
		}
	}
}
