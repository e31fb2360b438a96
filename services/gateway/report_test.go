package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
)

// GET /report reads every collection in two round trips in all: a pipeline
// of every set of ids, every partition's, then one of every entity; never a
// command on its own. So it does however many entities there are, with one
// partition per stream and with several. (An empty shop takes one: there
// is no entity to read.)
func TestReportIsTwoRoundTrips(t *testing.T) {
	t.Parallel()
	for _, partitions := range []int{1, 4} {
		t.Run(fmt.Sprint("partitions=", partitions), func(t *testing.T) {
			t.Parallel()
			base := platformtest.Config(t)
			base.Partitions = partitions
			app, _ := startWith(t, base, nil, func(*config) {})
			var sent redistest.Sent
			app.Redis.AddHook(&sent)
			for _, n := range []int{0, 3, 300} {
				if n > 0 {
					seed(t, app.Cache, n)
				}
				sent.Reset()
				// Once not counted, so that every connection it needs is
				// made (a new one says HELLO first).
				for _, ctx := range []context.Context{t.Context(), sent.Counted(t.Context())} {
					w := httptest.NewRecorder()
					app.Router.ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", "/report", nil))
					if w.Code != http.StatusOK {
						t.Fatalf("GET /report: %d %s", w.Code, w.Body)
					}
				}
				want := int64(2)
				if n == 0 {
					want = 1 // no entity to read
				}
				if p, c := sent.Pipelines.Load(), sent.Commands.Load(); p != want || c != 0 {
					t.Fatalf("GET /report of %d customers sent %d pipelines and %d commands alone, want %d and none", n, p, c, want)
				}
			}
		})
	}
}

// The report's JSON is what it always was, byte for byte: the collections
// by their plurals in key order, each a list in id order (empty, not null),
// each entity's fields in the order of their names, numbers as numbers, and
// HTML's special characters escaped.
func TestReportJSONIsUnchanged(t *testing.T) {
	t.Parallel()
	app, url := start(t, nil)
	get := func() string {
		t.Helper()
		resp, err := http.Get(url + "/report")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /report: %d %q %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		return string(body)
	}
	if got, want := get(), `{"billings":[],"customers":[],"inventory":[],"orders":[],"products":[]}`+"\n"; got != want {
		t.Fatalf("empty report:\n%s\nwant\n%s", got, want)
	}
	id := func(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }
	platformtest.Created(t, app.Cache, shop.Customers.Kind, shop.Customer{ID: id(2), Name: `Bob <&> "B"`, Email: "bob@example.com"})
	platformtest.Created(t, app.Cache, shop.Customers.Kind, shop.Customer{ID: id(1), Name: "Ada", Email: "ada@example.com"})
	platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{ID: id(11), Name: "Tea", Price: 350})
	platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{ID: id(12), Name: "Free", Price: 0})
	platformtest.Created(t, app.Cache, shop.Inventories.Kind, shop.Inventory{ID: id(21), ProductID: id(11), Amount: 7})
	platformtest.Created(t, app.Cache, shop.Inventories.Kind, shop.Inventory{ID: id(22), ProductID: id(12), Amount: 0})
	platformtest.Created(t, app.Cache, shop.Orders.Kind, shop.Order{ID: id(31), CustomerID: id(1), ProductIDs: []string{id(11), id(12), id(11)}})
	platformtest.Created(t, app.Cache, shop.Orders.Kind, shop.Order{ID: id(32), CustomerID: id(2), ProductIDs: []string{}})
	platformtest.Created(t, app.Cache, shop.Billings.Kind, shop.Billing{ID: id(41), OrderID: id(31), Done: true})
	platformtest.Created(t, app.Cache, shop.Billings.Kind, shop.Billing{ID: id(42), OrderID: id(32)})
	want := `{"billings":[{"done":true,"id":"00000000-0000-4000-8000-000000000041","order_id":"00000000-0000-4000-8000-000000000031"},` +
		`{"done":false,"id":"00000000-0000-4000-8000-000000000042","order_id":"00000000-0000-4000-8000-000000000032"}],` +
		`"customers":[{"email":"ada@example.com","id":"00000000-0000-4000-8000-000000000001","name":"Ada"},` +
		`{"email":"bob@example.com","id":"00000000-0000-4000-8000-000000000002","name":"Bob \u003c\u0026\u003e \"B\""}],` +
		`"inventory":[{"amount":7,"id":"00000000-0000-4000-8000-000000000021","product_id":"00000000-0000-4000-8000-000000000011"},` +
		`{"amount":0,"id":"00000000-0000-4000-8000-000000000022","product_id":"00000000-0000-4000-8000-000000000012"}],` +
		`"orders":[{"customer_id":"00000000-0000-4000-8000-000000000001","id":"00000000-0000-4000-8000-000000000031",` +
		`"product_ids":["00000000-0000-4000-8000-000000000011","00000000-0000-4000-8000-000000000012","00000000-0000-4000-8000-000000000011"]},` +
		`{"customer_id":"00000000-0000-4000-8000-000000000002","id":"00000000-0000-4000-8000-000000000032","product_ids":[]}],` +
		`"products":[{"id":"00000000-0000-4000-8000-000000000011","name":"Tea","price":350},` +
		`{"id":"00000000-0000-4000-8000-000000000012","name":"Free","price":0}]}` + "\n"
	if got := get(); got != want {
		t.Fatalf("report:\n%s\nwant\n%s", got, want)
	}
}
