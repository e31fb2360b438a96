package main

import (
	"net"
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// start runs the order service against an inventory address where nothing
// listens; the system tests run it with the real inventory service.
func start(t *testing.T) (*platform.App, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	app, srv := platformtest.Start(t, "order", platformtest.Config(t), func(app *platform.App) error {
		wire(app, "http://"+l.Addr().String())
		return nil
	})
	return app, srv.URL
}

func add(t *testing.T, app *platform.App, res platform.Resource, e entitycache.Entity) string {
	return platformtest.Created(t, app.Cache, res, e, nil).EntityID
}

func TestBadOrdersAreRejectedAndWriteNothing(t *testing.T) {
	t.Parallel()
	app, url := start(t)
	customer := add(t, app, platform.Customers, entitycache.Entity{"name": "Ada", "email": "ada@example.com"})
	product := add(t, app, platform.Products, entitycache.Entity{"name": "Tea", "price": 3})
	order := add(t, app, platform.Orders, entitycache.Entity{"customer_id": customer, "product_ids": []any{product}})
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
		platformtest.Bad("PUT unknown order", "PUT", "/order/"+unknown, map[string]any{"customer_id": customer, "product_ids": []string{product}}, 404),
		platformtest.Bad("PUT bad body", "PUT", "/order/"+order, map[string]any{"customer_id": customer}, 400),
		platformtest.Bad("DELETE unknown order", "DELETE", "/order/"+unknown, nil, 404),
		platformtest.Bad("DELETE non-UUID", "DELETE", "/orders/1", nil, 400),
		// With the inventory service down, nothing can be reserved.
		platformtest.Bad("inventory down", "POST", "/order", map[string]any{"customer_id": customer, "product_ids": []string{product}}, 503),
	}
	platformtest.RejectAll(t, app, url, "order", cases)
}

func TestUnbilledListsOrdersWithoutBilling(t *testing.T) {
	t.Parallel()
	app, url := start(t)
	var orders []string
	for range 3 {
		orders = append(orders, add(t, app, platform.Orders, entitycache.Entity{"customer_id": uuid.NewString(), "product_ids": []any{uuid.NewString()}}))
	}
	add(t, app, platform.Billings, entitycache.Entity{"order_id": orders[1], "done": false})
	var unbilled []map[string]any
	platformtest.JSON(t, "GET", url+"/orders/unbilled", nil, 200, &unbilled)
	if len(unbilled) != 2 || unbilled[0]["id"] == orders[1] || unbilled[1]["id"] == orders[1] {
		t.Fatalf("unbilled %v, billed order %s", unbilled, orders[1])
	}
}
