package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// start runs the order service against an inventory address where nothing
// listens; the system tests run it with the real inventory service. Its body
// limit is the default, which an order of the most pieces fits in.
func start(t *testing.T) (*platform.App, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	cfg := platformtest.Config(t)
	cfg.MaxBodyBytes = 1 << 20
	app, srv := platformtest.Start(t, "order", cfg, config{InventoryURL: "http://" + l.Addr().String()}, wire)
	return app, srv.URL
}

func add[T any](t *testing.T, app *platform.App, kind entitycache.Kind[T], ent T) string {
	return platformtest.Created(t, app.Cache, kind, ent).EntityID
}

func TestBadOrdersAreRejectedAndWriteNothing(t *testing.T) {
	t.Parallel()
	app, url := start(t)
	customer := add(t, app, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: "ada@example.com"})
	product := add(t, app, shop.Products.Kind, shop.Product{Name: "Tea", Price: 3})
	order := add(t, app, shop.Orders.Kind, shop.Order{CustomerID: customer, ProductIDs: []string{product}})
	unknown := uuid.NewString()
	cases := []platformtest.BadRequest{
		platformtest.Bad("missing customer", "POST", "/order", map[string]any{"product_ids": []string{product}}, 400),
		platformtest.Bad("non-UUID customer", "POST", "/order", map[string]any{"customer_id": "c1", "product_ids": []string{product}}, 400),
		platformtest.Bad("unknown customer", "POST", "/order", map[string]any{"customer_id": unknown, "product_ids": []string{product}}, 404),
		platformtest.Bad("no products", "POST", "/order", map[string]any{"customer_id": customer, "product_ids": []string{}}, 400),
		platformtest.Bad("product_ids not a list", "POST", "/order", map[string]any{"customer_id": customer, "product_ids": product}, 400),
		platformtest.Bad("non-UUID product", "POST", "/order", map[string]any{"customer_id": customer, "product_ids": []string{"p1"}}, 400),
		platformtest.Bad("unknown product", "POST", "/orders", map[string]any{"customer_id": customer, "product_ids": []string{product, unknown}}, 404),
		platformtest.Bad("malformed", "POST", "/orders", `[{"customer_id": `, 400),
		platformtest.Bad("more pieces than an order holds", "POST", "/order", map[string]any{"customer_id": customer, "product_ids": slices.Repeat([]string{product}, shop.MaxPieces+1)}, 413),
		platformtest.Bad("customer_id given twice", "POST", "/order", `{"customer_id": "`+unknown+`", "product_ids": ["`+product+`"], "customer_id": "`+customer+`"}`, 400),
		platformtest.Bad("batch over MaxBatch", "POST", "/orders", slices.Repeat([]map[string]any{{"customer_id": customer, "product_ids": []string{product}}}, platformtest.MaxBatch+1), 413),
		platformtest.Bad("text/plain", "POST", "/order", platformtest.Typed("text/plain", `{"customer_id": "`+customer+`", "product_ids": ["`+product+`"]}`), 415),
		platformtest.Bad("PUT unknown order", "PUT", "/order/"+unknown, map[string]any{"customer_id": customer, "product_ids": []string{product}}, 404),
		platformtest.Bad("PUT bad body", "PUT", "/order/"+order, map[string]any{"customer_id": customer}, 400),
		platformtest.Bad("DELETE unknown order", "DELETE", "/order/"+unknown, nil, 404),
		platformtest.Bad("DELETE non-UUID", "DELETE", "/orders/1", nil, 400),
		// With the inventory service down, nothing can be reserved.
		platformtest.Bad("inventory down", "POST", "/order", map[string]any{"customer_id": customer, "product_ids": []string{product}}, 503),
	}
	platformtest.RejectAll(t, app, url, "order", cases)
}

// Unbilled orders come whole or page by page; a page reads only its own
// orders and their billings, so it may hold fewer than its limit.
func TestUnbilledListsOrdersWithoutBilling(t *testing.T) {
	t.Parallel()
	app, url := start(t)
	var orders []string
	for range 5 {
		orders = append(orders, add(t, app, shop.Orders.Kind, shop.Order{CustomerID: uuid.NewString(), ProductIDs: []string{uuid.NewString()}}))
	}
	slices.Sort(orders)
	for _, billed := range []string{orders[1], orders[2]} {
		b, err := shop.NewBilling(billed, false)
		if err != nil {
			t.Fatal(err)
		}
		add(t, app, shop.Billings.Kind, b)
	}
	want := []string{orders[0], orders[3], orders[4]}
	var unbilled []map[string]any
	platformtest.JSON(t, "GET", url+"/orders/unbilled", nil, 200, &unbilled)
	if ids := idsOf(unbilled); !slices.Equal(ids, want) {
		t.Fatalf("unbilled %v, want %v", ids, want)
	}
	var ids []string
	var sizes []int
	for _, page := range platformtest.Pages(t, url+"/orders/unbilled?limit=2") {
		ids, sizes = append(ids, idsOf(page)...), append(sizes, len(page))
	}
	if !slices.Equal(ids, want) || !slices.Equal(sizes, []int{1, 1, 1}) {
		t.Fatalf("unbilled in pages of 2: %v in pages of %v, want %v in pages of [1 1 1]", ids, sizes, want)
	}
	platformtest.Rejected(t, "GET", url+"/orders/unbilled?limit=0", nil, 400)
}

func idsOf(ents []map[string]any) []string {
	ids := make([]string, len(ents))
	for i, e := range ents {
		ids[i] = e["id"].(string)
	}
	return ids
}

// startWith runs the order service on a Stock of the test's.
func startWith(t *testing.T, stock Stock) (*platform.App, *platformtest.Server) {
	return platformtest.Start(t, "order", platformtest.Config(t), stock, func(app *platform.App, s Stock) error {
		routes(app, orders{cache: app.Cache, stock: s, log: app.Log, timeout: time.Second})
		return nil
	})
}

// heldStock is Stock in memory: what each order holds, and a product that is
// out of stock.
type heldStock struct {
	mu      sync.Mutex
	held    map[string][]string
	scarce  string
	reserve int  // calls of Reserve
	lost    bool // Reserve reserves, but its answer is lost
	down    bool // Release fails
}

func (s *heldStock) Reserve(_ context.Context, orderID string, productIDs []string, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserve++
	if slices.Contains(productIDs, s.scarce) {
		return &shop.OutOfStockError{ProductID: s.scarce, Wanted: 1}
	}
	s.held[orderID] = productIDs
	if s.lost {
		return errors.New("answer lost")
	}
	return nil
}

func (s *heldStock) Release(_ context.Context, orderID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("inventory down")
	}
	delete(s.held, orderID)
	return nil
}

func (s *heldStock) reserved() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserve
}

func (s *heldStock) of(orderID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[orderID]
}

// The saga of an order against a stock in memory: reserve, then record; a
// refusal anywhere in a batch leaves nothing held and nothing recorded; an
// update swaps what is held; a delete releases it.
func TestOrdersKeepTheirStockInStep(t *testing.T) {
	t.Parallel()
	stock := &heldStock{held: map[string][]string{}, scarce: uuid.NewString()}
	app, srv := startWith(t, stock)
	customer := add(t, app, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: "ada@example.com"})
	tea := add(t, app, shop.Products.Kind, shop.Product{Name: "Tea", Price: 3})
	cake := add(t, app, shop.Products.Kind, shop.Product{Name: "Cake", Price: 4})
	add(t, app, shop.Products.Kind, shop.Product{ID: stock.scarce, Name: "Saffron", Price: 9})

	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/order", map[string]any{"customer_id": customer, "product_ids": []string{tea, tea}}, 200, &ids)
	if got := stock.of(ids[0]); !slices.Equal(got, []string{tea, tea}) {
		t.Fatalf("new order holds %v", got)
	}

	batch := []map[string]any{
		{"customer_id": customer, "product_ids": []string{cake}},
		{"customer_id": customer, "product_ids": []string{stock.scarce}},
	}
	if msg := platformtest.Rejected(t, "POST", srv.URL+"/orders", batch, 409); !strings.Contains(msg, stock.scarce) {
		t.Fatalf("refusal %q does not name the product", msg)
	}
	if all, _ := shop.Orders.List(t.Context(), app.Cache); len(all) != 1 {
		t.Fatalf("%d orders recorded after a refused batch, want 1", len(all))
	}
	if stock.mu.Lock(); len(stock.held) != 1 {
		t.Fatalf("a refused batch left stock held: %v", stock.held)
	}
	stock.mu.Unlock()

	platformtest.JSON(t, "PUT", srv.URL+"/order/"+ids[0], map[string]any{"customer_id": customer, "product_ids": []string{cake}}, 200, nil)
	if got := stock.of(ids[0]); !slices.Equal(got, []string{cake}) {
		t.Fatalf("updated order holds %v", got)
	}
	platformtest.Rejected(t, "PUT", srv.URL+"/order/"+ids[0], map[string]any{"customer_id": customer, "product_ids": []string{stock.scarce}}, 409)
	if got := stock.of(ids[0]); !slices.Equal(got, []string{cake}) {
		t.Fatalf("a refused update left the order holding %v", got)
	}
	calls := stock.reserved()
	platformtest.Rejected(t, "PUT", srv.URL+"/order/"+uuid.NewString(), map[string]any{"customer_id": customer, "product_ids": []string{tea}}, 404)
	if stock.reserved() != calls {
		t.Fatal("an update of an unknown order reserved stock")
	}

	platformtest.JSON(t, "DELETE", srv.URL+"/order/"+ids[0], nil, 200, nil)
	if got := stock.of(ids[0]); got != nil {
		t.Fatalf("deleted order holds %v", got)
	}
}

// A reservation whose answer was lost is released with the refused order; a
// delete answers once it committed, even if the release fails (inventory
// follows the deletion later), and a delete of an order that is gone
// releases all the same.
func TestLostAnswersAndFailedReleasesLeaveNoStockBehind(t *testing.T) {
	t.Parallel()
	stock := &heldStock{held: map[string][]string{}}
	app, srv := startWith(t, stock)
	customer := add(t, app, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: "ada@example.com"})
	tea := add(t, app, shop.Products.Kind, shop.Product{Name: "Tea", Price: 3})
	order := map[string]any{"customer_id": customer, "product_ids": []string{tea}}

	stock.mu.Lock()
	stock.lost = true
	stock.mu.Unlock()
	platformtest.Rejected(t, "POST", srv.URL+"/order", order, 500)
	if stock.mu.Lock(); len(stock.held) != 0 {
		t.Fatalf("a reservation whose answer was lost stayed: %v", stock.held)
	}
	stock.lost, stock.down = false, true
	stock.mu.Unlock()

	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/order", order, 200, &ids)
	platformtest.JSON(t, "DELETE", srv.URL+"/order/"+ids[0], nil, 200, nil)
	if ord, _, _ := shop.Orders.Get(t.Context(), app.Cache, ids[0]); ord != nil || stock.of(ids[0]) == nil {
		t.Fatalf("after a delete whose release failed: order %v, held %v", ord, stock.of(ids[0]))
	}
	stock.mu.Lock()
	stock.down = false
	stock.mu.Unlock()
	platformtest.Rejected(t, "DELETE", srv.URL+"/order/"+ids[0], nil, 404)
	if got := stock.of(ids[0]); got != nil {
		t.Fatalf("a second delete did not release: %v", got)
	}
}

// A billed order stays as billed: its bill and mails state what it holds.
// A change with a stale If-Match is 412 before any stock moves.
func TestBilledOrderIsNotChangedOrDeleted(t *testing.T) {
	t.Parallel()
	stock := &heldStock{held: map[string][]string{}, scarce: uuid.NewString()}
	app, srv := startWith(t, stock)
	customer := add(t, app, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: "ada@example.com"})
	tea := add(t, app, shop.Products.Kind, shop.Product{Name: "Tea", Price: 3})
	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/orders", []map[string]any{{"customer_id": customer, "product_ids": []string{tea}}, {"customer_id": customer, "product_ids": []string{tea}}}, 200, &ids)
	add(t, app, shop.Billings.Kind, shop.Billing{ID: shop.BillingID(ids[0]), OrderID: ids[0]})
	body := map[string]any{"customer_id": customer, "product_ids": []string{tea, tea}}
	platformtest.Rejected(t, "PUT", srv.URL+"/order/"+ids[0], body, 409)
	platformtest.Rejected(t, "DELETE", srv.URL+"/orders/"+ids[0], nil, 409)
	if got := stock.of(ids[0]); !slices.Equal(got, []string{tea}) {
		t.Fatalf("billed order holds %v", got)
	}
	calls := stock.reserved()
	status, _, _, err := platformtest.SendWith("PUT", srv.URL+"/order/"+ids[1], body, http.Header{"If-Match": {`"7"`}})
	if err != nil || status != http.StatusPreconditionFailed || stock.reserved() != calls {
		t.Fatalf("PUT with a stale ETag: %d %v", status, err)
	}
	platformtest.JSON(t, "DELETE", srv.URL+"/order/"+ids[1], nil, 200, nil) // not billed
}
