package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
)

// 200 concurrent orders against a stock of 100: exactly 100 accepted, the
// rest refused with 409, and the stock never below zero in any event.
func TestConcurrentOrdersNeverOversell(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	g := s.Gateway
	customers, _ := g.Customers(t, "oversell", 1)
	product := g.Create(t, "/product", map[string]any{"name": "Scarce", "price": 1})[0]
	inventory := g.Create(t, "/inventory", map[string]any{"product_id": product, "amount": 100})[0]

	statuses := make([]int, 200)
	bodies := make([][]byte, 200)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var err error
			statuses[i], bodies[i], err = send("POST", string(g)+"/orders", map[string]any{"customer_id": customers[0], "product_ids": []string{product}})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for i, st := range statuses {
		count[st]++
		if st != http.StatusOK && st != http.StatusConflict {
			t.Errorf("order %d: %d %s", i, st, bodies[i])
		}
		if st == http.StatusConflict && !isJSONError(string(bodies[i])) {
			t.Errorf("order %d: 409 without a JSON error: %s", i, bodies[i])
		}
	}
	if count[http.StatusOK] != 100 || count[http.StatusConflict] != 100 {
		t.Fatalf("answers %v, want 100 × 200 and 100 × 409", count)
	}
	if amount := g.Get(t, "/inventory/"+inventory)["amount"]; amount != float64(0) {
		t.Fatalf("stock %v after 100 orders of a stock of 100, want 0", amount)
	}
	if n := len(g.List(t, "/orders")); n != 100 {
		t.Fatalf("%d orders recorded, want 100", n)
	}

	entries, err := s.Redis().XRange(context.Background(), "events:{inventory}", "-", "+").Result()
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
		t.Fatalf("%d stock updates and %d reservations in events:{inventory}, want 100 and 100", updates, reservations)
	}
}
