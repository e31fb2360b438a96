// Package scenario drives OrderShop through its gateway as the original
// client did, checking every answer. The system tests (services as
// processes) and the e2e tests (services in containers) share it.
package scenario

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
)

// Gateway is the URL of the gateway, e.g. http://127.0.0.1:5000.
type Gateway string

// Entity is an entity as the gateway answers it.
type Entity = map[string]any

// Create posts one object or a list and returns the new ids.
func (g Gateway) Create(t testing.TB, path string, body any) []string {
	t.Helper()
	var ids []string
	platformtest.JSON(t, "POST", string(g)+path, body, 200, &ids)
	return ids
}

// Get answers the entity at path, nil for JSON null.
func (g Gateway) Get(t testing.TB, path string) Entity {
	t.Helper()
	var e Entity
	platformtest.JSON(t, "GET", string(g)+path, nil, 200, &e)
	return e
}

// List answers the list at path.
func (g Gateway) List(t testing.TB, path string) []Entity {
	t.Helper()
	var l []Entity
	platformtest.JSON(t, "GET", string(g)+path, nil, 200, &l)
	return l
}

// Do sends a command that answers true.
func (g Gateway) Do(t testing.TB, method, path string, body any) {
	t.Helper()
	var ok bool
	platformtest.JSON(t, method, string(g)+path, body, 200, &ok)
	if !ok {
		t.Fatalf("%s %s answered false", method, path)
	}
}

// Mails lists the mails msg sent, by recipient.
func (g Gateway) Mails(t testing.TB) []Entity { return g.List(t, "/emails") }

// CountMails counts the mails whose text starts with prefix, per recipient,
// and fails on a key seen twice.
func (g Gateway) CountMails(t testing.TB, prefix string) map[string]int {
	t.Helper()
	n, keys := map[string]int{}, map[any]bool{}
	for _, m := range g.Mails(t) {
		if keys[m["key"]] {
			t.Fatalf("mail key %v sent twice", m["key"])
		}
		keys[m["key"]] = true
		if strings.HasPrefix(fmt.Sprint(m["msg"]), prefix) {
			n[fmt.Sprint(m["to"])]++
		}
	}
	return n
}

// WaitMails waits until every address got exactly one mail starting with
// prefix (more than one fails at once).
func (g Gateway) WaitMails(t testing.TB, within time.Duration, prefix string, to []string) {
	t.Helper()
	redistest.Eventually(t, within, fmt.Sprintf("%d %q mails", len(to), prefix), func() bool {
		n := g.CountMails(t, prefix)
		done := true
		for _, addr := range to {
			if n[addr] > 1 {
				t.Fatalf("%d %q mails to %s", n[addr], prefix, addr)
			}
			done = done && n[addr] == 1
		}
		return done
	})
}

// Customers creates n customers in one request and returns their ids and
// e-mail addresses; tag keeps addresses apart between runs.
func (g Gateway) Customers(t testing.TB, tag string, n int) (ids, emails []string) {
	t.Helper()
	var body []map[string]string
	for i := range n {
		emails = append(emails, fmt.Sprintf("%s-%d-%d@example.com", tag, i, rand.IntN(1e9)))
		body = append(body, map[string]string{"name": fmt.Sprintf("Customer %d", i), "email": emails[i]})
	}
	return g.Create(t, "/customers", body), emails
}

func amountOf(e Entity) int { return int(e["amount"].(float64)) }

// Original walks the original client's scenario: 10 customers, 10 products,
// stock of 100 each, 10 orders of 1 to 10 random products, the second order
// updated, the third deleted, the third customer deleted, the first order
// billed; then 8 unbilled orders and a report in which stock matches the
// orders. Then it waits for the mails the events cause.
func Original(t testing.TB, g Gateway) {
	customers, emails := g.Customers(t, "original", 10)
	var products []string
	for i := range 10 {
		products = append(products, g.Create(t, "/product", map[string]any{"name": fmt.Sprintf("Product %d", i), "price": 100 + i})...)
	}
	var stock []map[string]any
	for _, p := range products {
		stock = append(stock, map[string]any{"product_id": p, "amount": 100})
	}
	inventory := g.Create(t, "/inventory", stock)
	if len(customers) != 10 || len(products) != 10 || len(inventory) != 10 {
		t.Fatalf("created %d customers, %d products, %d inventory", len(customers), len(products), len(inventory))
	}

	orders := make([]string, 10)
	picks := make([][]string, 10)
	for i := range orders {
		for range 1 + rand.IntN(10) {
			picks[i] = append(picks[i], products[rand.IntN(len(products))])
		}
		orders[i] = g.Create(t, "/orders", map[string]any{"customer_id": customers[i], "product_ids": picks[i]})[0]
	}
	for i, id := range orders {
		o := g.Get(t, "/order/"+id)
		if o["customer_id"] != customers[i] || !slices.Equal(strs(o["product_ids"]), picks[i]) {
			t.Fatalf("order %d: %v, want products %v", i, o, picks[i])
		}
	}

	// Update the second order's first product.
	picks[1][0] = products[(slices.Index(products, picks[1][0])+1)%len(products)]
	g.Do(t, "PUT", "/order/"+orders[1], map[string]any{"customer_id": customers[1], "product_ids": picks[1]})
	if got := strs(g.Get(t, "/order/"+orders[1])["product_ids"]); !slices.Equal(got, picks[1]) {
		t.Fatalf("updated order has %v, want %v", got, picks[1])
	}
	// Delete the third order and the third customer.
	g.Do(t, "DELETE", "/order/"+orders[2], nil)
	if o := g.Get(t, "/order/"+orders[2]); o != nil {
		t.Fatalf("deleted order still answers %v", o)
	}
	g.Do(t, "DELETE", "/customer/"+customers[2], nil)
	if c := g.Get(t, "/customer/"+customers[2]); c != nil {
		t.Fatalf("deleted customer still answers %v", c)
	}
	// Bill the first order.
	billing := g.Create(t, "/billing", map[string]any{"order_id": orders[0]})
	if b := g.Get(t, "/billing/"+billing[0]); b["order_id"] != orders[0] || b["done"] != false {
		t.Fatalf("billing %v", b)
	}
	// Paid: the receipt goes out once the billing is done.
	g.Do(t, "PUT", "/billing/"+billing[0], map[string]any{"order_id": orders[0], "done": true})

	unbilled := g.List(t, "/orders/unbilled")
	if len(unbilled) != 8 {
		t.Fatalf("%d unbilled orders, want 8", len(unbilled))
	}
	for _, o := range unbilled {
		if o["id"] == orders[0] || o["id"] == orders[2] {
			t.Fatalf("order %v listed as unbilled", o["id"])
		}
	}

	var report map[string][]Entity
	platformtest.JSON(t, "GET", string(g)+"/report", nil, 200, &report)
	if len(report["customers"]) != 9 || len(report["products"]) != 10 || len(report["inventory"]) != 10 ||
		len(report["orders"]) != 9 || len(report["billings"]) != 1 {
		t.Fatalf("report counts: %d customers, %d products, %d inventory, %d orders, %d billings",
			len(report["customers"]), len(report["products"]), len(report["inventory"]), len(report["orders"]), len(report["billings"]))
	}
	held := map[string]int{}
	for i, p := range picks {
		if i != 2 {
			for _, id := range p {
				held[id]++
			}
		}
	}
	for _, inv := range report["inventory"] {
		if p := inv["product_id"].(string); amountOf(inv) != 100-held[p] {
			t.Fatalf("product %s has %d in stock, want %d", p, amountOf(inv), 100-held[p])
		}
	}
	b, _ := json.Marshal(report["orders"][0])
	t.Logf("report: 9 customers, 10 products, 10 inventory, 9 orders, 1 billing; an order: %s", b)

	g.WaitMails(t, 30*time.Second, "Welcome", emails)
	g.WaitMails(t, 30*time.Second, "Goodbye", emails[2:3])
	// The third customer may be gone before CRM reads its order: no thank-you then.
	g.WaitMails(t, 30*time.Second, "Thank you", append(emails[:2:2], emails[3:]...))
	g.WaitMails(t, 30*time.Second, "Receipt", emails[0:1])
}

// Oversell sends 200 orders at once for a product with a stock of 100:
// exactly 100 are accepted and the rest refused with a 409 JSON error, the
// stock ends at 0, and the inventory stream (its key is stream, read through
// rdb) holds 100 stock updates, 100 reservations and never a stock below
// zero.
func Oversell(t testing.TB, g Gateway, rdb redis.UniversalClient, stream string) {
	customers, _ := g.Customers(t, "oversell", 1)
	product := g.Create(t, "/product", map[string]any{"name": "Scarce", "price": 1})[0]
	inventory := g.Create(t, "/inventory", map[string]any{"product_id": product, "amount": 100})[0]

	statuses, answers := platformtest.Concurrently(t, 200, func() (string, string, any) {
		return "POST", string(g) + "/orders", map[string]any{"customer_id": customers[0], "product_ids": []string{product}}
	})
	for i, a := range answers {
		var e struct{ Error string }
		switch {
		case a.Status == http.StatusConflict && (json.Unmarshal(a.Body, &e) != nil || e.Error == ""):
			t.Errorf("order %d: 409 without a JSON error: %s", i, a.Body)
		case a.Status != http.StatusOK && a.Status != http.StatusConflict:
			t.Errorf("order %d: %d %s", i, a.Status, a.Body)
		}
	}
	if statuses[http.StatusOK] != 100 || statuses[http.StatusConflict] != 100 {
		t.Fatalf("answers %v, want 100 × 200 and 100 × 409", statuses)
	}
	if amount := g.Get(t, "/inventory/"+inventory)["amount"]; amount != float64(0) {
		t.Fatalf("stock %v after 100 orders of a stock of 100, want 0", amount)
	}
	if n := len(g.List(t, "/orders")); n != 100 {
		t.Fatalf("%d orders recorded, want 100", n)
	}

	entries, err := rdb.XRange(t.Context(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	updates, reservations := 0, 0
	for _, e := range entries {
		switch e.Values["entity_type"] {
		case "inventory":
			var inv struct{ Amount *int64 }
			if err := json.Unmarshal([]byte(e.Values["entity"].(string)), &inv); err != nil || inv.Amount == nil {
				t.Fatalf("inventory event %s: entity %v (%v)", e.ID, e.Values["entity"], err)
			}
			if *inv.Amount < 0 {
				t.Fatalf("inventory event %s: stock %d", e.ID, *inv.Amount)
			}
			if e.Values["type"] == "inventory_updated" {
				updates++
			}
		case "reservation":
			reservations++
		}
	}
	if updates != 100 || reservations != 100 {
		t.Fatalf("%d stock updates and %d reservations in %s, want 100 and 100", updates, reservations, stream)
	}
}

func strs(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}
