package main

import (
	"encoding/json"
	"math"
	"net/http"
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
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// setup starts the service with products that each have the given stock.
// Its sweeper waits a minute for an order: tests sweep themselves.
func setup(t *testing.T, stock ...int64) (*platform.App, string, []string) {
	t.Helper()
	cfg := config{Consuming: platform.Consuming{ConsumerName: "inventory-1", ClaimIdle: 50 * time.Millisecond,
		RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond, MaxDeliveries: 3, Batch: 50},
		ReservationGrace: time.Minute}
	app, srv := platformtest.Start(t, "inventory", platformtest.Config(t), cfg, wire)
	products := make([]string, len(stock))
	for i, n := range stock {
		products[i] = platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "p", Price: 1}).EntityID
		platformtest.JSON(t, "POST", srv.URL+"/inventory", map[string]any{"product_id": products[i], "amount": n}, 200, nil)
	}
	return app, srv.URL, products
}

func amount(t *testing.T, url, product string) int64 {
	t.Helper()
	var inv shop.Inventory
	platformtest.JSON(t, "GET", url+"/inventory/"+shop.InventoryID(product), nil, 200, &inv)
	return inv.Amount
}

func TestOneInventoryPerExistingProduct(t *testing.T) {
	t.Parallel()
	_, url, products := setup(t, 5)
	platformtest.Rejected(t, "POST", url+"/inventory", map[string]any{"product_id": products[0], "amount": 1}, 409)
	platformtest.Rejected(t, "POST", url+"/inventory", map[string]any{"product_id": uuid.NewString(), "amount": 1}, 404)
	platformtest.Rejected(t, "POST", url+"/inventory", map[string]any{"product_id": "p1", "amount": 1}, 400)
	platformtest.Rejected(t, "POST", url+"/inventory", map[string]any{"product_id": products[0], "amount": -1}, 400)
	platformtest.Rejected(t, "POST", url+"/inventory", map[string]any{"product_id": products[0]}, 400)
	twice := map[string]any{"product_id": products[0], "amount": 1}
	if msg := platformtest.Rejected(t, "POST", url+"/inventory", []any{twice, twice}, 409); !strings.Contains(msg, "twice") {
		t.Fatalf("a product twice in one list: %s", msg)
	}
	platformtest.Rejected(t, "PUT", url+"/inventory/"+shop.InventoryID(uuid.NewString()), map[string]any{"product_id": products[0], "amount": 1}, 400)
	platformtest.Rejected(t, "PUT", url+"/inventory/"+shop.InventoryID(products[0]), map[string]any{"product_id": products[0], "amount": 1 << 53}, 400)
	platformtest.JSON(t, "PUT", url+"/inventory/"+shop.InventoryID(products[0]), map[string]any{"product_id": products[0], "amount": 9}, 200, nil)
	if n := amount(t, url, products[0]); n != 9 {
		t.Fatalf("amount %d after PUT", n)
	}
	// Deleted, it may be created again.
	platformtest.JSON(t, "DELETE", url+"/inventory/"+shop.InventoryID(products[0]), nil, 200, nil)
	platformtest.JSON(t, "POST", url+"/inventory", map[string]any{"product_id": products[0], "amount": 2}, 200, nil)
}

func TestConcurrentCreatesOfOneProductsInventoryMakeOne(t *testing.T) {
	t.Parallel()
	app, url, _ := setup(t)
	product := platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "p", Price: 1}).EntityID
	var created atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _ := platformtest.Do(t, "POST", url+"/inventory", map[string]any{"product_id": product, "amount": 1}); status == 200 {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("%d inventories created for one product", created.Load())
	}
}

func TestReservationIsAllOrNothingAndSwaps(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, 3, 1)
	order := uuid.NewString()
	platformtest.JSON(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{p[0], p[0], p[1]}}, 200, nil)
	if amount(t, url, p[0]) != 1 || amount(t, url, p[1]) != 0 {
		t.Fatal("reservation did not take 2 and 1")
	}
	// A second order wants p0 and p1; p1 is gone, so p0 must stay untouched.
	msg := platformtest.Rejected(t, "PUT", url+"/reservations/"+uuid.NewString(), map[string]any{"product_ids": []string{p[0], p[1]}}, 409)
	if amount(t, url, p[0]) != 1 {
		t.Fatalf("a failed reservation took stock (%s)", msg)
	}
	// Asking again for what it holds writes nothing.
	before, _ := app.Store.Info(t.Context(), app.Store.FirstPartition("inventory"))
	platformtest.JSON(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{p[0], p[0], p[1]}}, 200, nil)
	if after, _ := app.Store.Info(t.Context(), app.Store.FirstPartition("inventory")); after.Length != before.Length {
		t.Fatalf("an unchanged reservation wrote %d events", after.Length-before.Length)
	}
	// Swap the first order's reservation for one p0.
	platformtest.JSON(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{p[0]}}, 200, nil)
	if amount(t, url, p[0]) != 2 || amount(t, url, p[1]) != 1 {
		t.Fatalf("swap: %d %d", amount(t, url, p[0]), amount(t, url, p[1]))
	}
	for range 2 {
		platformtest.JSON(t, "DELETE", url+"/reservations/"+order, nil, 200, nil)
	}
	if amount(t, url, p[0]) != 3 || amount(t, url, p[1]) != 1 {
		t.Fatalf("double release: %d %d", amount(t, url, p[0]), amount(t, url, p[1]))
	}
	platformtest.Rejected(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{}}, 400)
	platformtest.Rejected(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{"x"}}, 400)
	platformtest.Rejected(t, "PUT", url+"/reservations/x", map[string]any{"product_ids": []string{p[0]}}, 400)
	platformtest.Rejected(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{uuid.NewString()}}, 409)
}

func TestConcurrentReservationsNeverOversell(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, 100)
	statuses, _ := platformtest.Concurrently(t, 200, func() (string, string, any) {
		return "PUT", url + "/reservations/" + uuid.NewString(), map[string]any{"product_ids": []string{p[0]}}
	})
	if statuses[http.StatusOK] != 100 || statuses[http.StatusConflict] != 100 || amount(t, url, p[0]) != 0 {
		t.Fatalf("answers %v, stock %d", statuses, amount(t, url, p[0]))
	}
	// Every amount the stream ever recorded stayed at or above zero.
	err := app.Store.Replay(t.Context(), app.Store.FirstPartition("inventory"), "0", func(events []eventstore.Event) error {
		for _, e := range events {
			var inv struct{ Amount *int64 }
			if json.Unmarshal(e.Entity, &inv); e.EntityType == "inventory" && *inv.Amount < 0 {
				t.Errorf("event %s recorded amount %d", e.StreamID, *inv.Amount)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Stock given back never passes 2^53-1, nor wraps: not from the bound, not
// from an amount an older stream recorded beyond it.
func TestGivingStockBackStaysWithinTheBound(t *testing.T) {
	t.Parallel()
	app, url, p := setup(t, shop.MaxAmount)
	order := uuid.NewString()
	platformtest.JSON(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{p[0]}}, 200, nil)
	platformtest.JSON(t, "PUT", url+"/inventory/"+shop.InventoryID(p[0]), map[string]any{"product_id": p[0], "amount": shop.MaxAmount}, 200, nil)
	platformtest.JSON(t, "DELETE", url+"/reservations/"+order, nil, 200, nil)
	if n := amount(t, url, p[0]); n != shop.MaxAmount {
		t.Fatalf("amount %d after giving back at the bound, want %d", n, shop.MaxAmount)
	}

	platformtest.JSON(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{p[0]}}, 200, nil)
	inv, version, err := shop.Inventories.Get(t.Context(), app.Cache, shop.InventoryID(p[0]))
	if err != nil {
		t.Fatal(err)
	}
	inv.Amount = math.MaxInt64
	if _, err := app.Cache.Commit(t.Context(), shop.Inventories.Change(shop.InventoryUpdated, *inv, version)); err != nil {
		t.Fatal(err)
	}
	platformtest.JSON(t, "DELETE", url+"/reservations/"+order, nil, 200, nil)
	if n := amount(t, url, p[0]); n != shop.MaxAmount {
		t.Fatalf("amount %d after giving back to int64's max, want %d", n, shop.MaxAmount)
	}
}

// An inventory whose stock a reservation holds is not deleted: created again,
// it would get back pieces it never had when the order lets them go.
func TestReservedInventoryIsNotDeleted(t *testing.T) {
	t.Parallel()
	_, url, p := setup(t, 5, 5)
	order := uuid.NewString()
	platformtest.JSON(t, "PUT", url+"/reservations/"+order, map[string]any{"product_ids": []string{p[0], p[0], p[0]}}, 200, nil)
	if msg := platformtest.Rejected(t, "DELETE", url+"/inventory/"+shop.InventoryID(p[0]), nil, 409); !strings.Contains(msg, "reserv") {
		t.Fatalf("DELETE of reserved stock said %q", msg)
	}
	platformtest.JSON(t, "DELETE", url+"/inventory/"+shop.InventoryID(p[1]), nil, 200, nil) // nothing holds it
	platformtest.JSON(t, "DELETE", url+"/reservations/"+order, nil, 200, nil)
	if n := amount(t, url, p[0]); n != 5 {
		t.Fatalf("amount %d after the release, want 5", n)
	}
	platformtest.JSON(t, "DELETE", url+"/inventory/"+shop.InventoryID(p[0]), nil, 200, nil)
}

// A PUT with the ETag of the stock it read does not overwrite a reservation
// made meanwhile.
func TestPutWithIfMatchKeepsAReservationMadeMeanwhile(t *testing.T) {
	t.Parallel()
	_, url, p := setup(t, 5)
	item := url + "/inventory/" + shop.InventoryID(p[0])
	_, h, _, err := platformtest.SendWith("GET", item, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	platformtest.JSON(t, "PUT", url+"/reservations/"+uuid.NewString(), map[string]any{"product_ids": []string{p[0]}}, 200, nil)
	status, _, _, err := platformtest.SendWith("PUT", item, map[string]any{"product_id": p[0], "amount": 10}, http.Header{"If-Match": {h.Get("ETag")}})
	if err != nil || status != http.StatusPreconditionFailed || amount(t, url, p[0]) != 4 {
		t.Fatalf("PUT with a stale ETag: %d %v, amount %d", status, err, amount(t, url, p[0]))
	}
}
