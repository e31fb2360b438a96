package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// The gateway's reads through its router, middleware included, on the data
// make bench seeds: n customers, 5 products with their stock, 5 orders and 2
// billings. For profiles: go test -bench Read -cpuprofile, -memprofile.
func BenchmarkRead(b *testing.B) {
	// Each request's log line is made as in production, and thrown away.
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	for _, n := range []int{10, 1000} {
		app, _ := start(b, nil)
		seed(b, app.Cache, n)
		for _, path := range []string{"/customers", "/report"} {
			b.Run(fmt.Sprintf("%s/n=%d", path[1:], n), func(b *testing.B) {
				req := httptest.NewRequest("GET", path, nil)
				b.ReportAllocs()
				for b.Loop() {
					w := httptest.NewRecorder()
					app.Router.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatal(w.Code, w.Body)
					}
				}
			})
		}
	}
}

// seed writes the entities of make bench's reads, in commits of up to 100.
func seed(t testing.TB, cache *entitycache.Cache, n int) {
	t.Helper()
	many := func(changes []entitycache.Change) {
		t.Helper()
		for len(changes) > 0 {
			k := min(len(changes), 100)
			if _, err := cache.Commit(t.Context(), changes[:k]...); err != nil {
				t.Fatal(err)
			}
			changes = changes[k:]
		}
	}
	created := func(k entitycache.Kind[shop.Customer], i int) entitycache.Change {
		return k.Change(k.Created, shop.Customer{ID: uuid.NewString(), Name: fmt.Sprint("Customer ", i), Email: fmt.Sprintf("customer%d@example.com", i)}, eventstore.NoEntity)
	}
	var customers []entitycache.Change
	for i := range n {
		customers = append(customers, created(shop.Customers.Kind, i))
	}
	many(customers)
	var products []string
	for i := range 5 {
		p := platformtest.Created(t, cache, shop.Products.Kind, shop.Product{Name: fmt.Sprint("Product ", i), Price: int64(100 * (i + 1))})
		products = append(products, p.EntityID)
		platformtest.Created(t, cache, shop.Inventories.Kind, shop.Inventory{ID: uuid.NewString(), ProductID: p.EntityID, Amount: 100})
	}
	var orders []string
	for i := range 5 {
		o := platformtest.Created(t, cache, shop.Orders.Kind, shop.Order{CustomerID: customers[i%n].ID, ProductIDs: products[:2]})
		orders = append(orders, o.EntityID)
	}
	for i := range 2 {
		platformtest.Created(t, cache, shop.Billings.Kind, shop.Billing{OrderID: orders[i], Done: i == 0})
	}
}

// BenchmarkCommand is what the gateway's hop costs a command: POST /customer
// through the gateway's router to a customer service that answers at once.
func BenchmarkCommand(b *testing.B) {
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`["9063505b-ec4b-46f4-a9c7-5395a48ccc0a"]` + "\n"))
	}))
	defer owner.Close()
	app, _ := start(b, map[string]string{"customer": owner.URL})
	body := []byte(`{"name":"Ada Lovelace","email":"ada@example.com"}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/customer", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		app.Router.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatal(w.Code, w.Body)
		}
	}
}
