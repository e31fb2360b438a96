package system

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/tests/scenario"
)

// Invariant 9: the stock held converges to what the live orders hold,
// whatever crashed or timed out in between, within seconds.

// stocked creates products with an inventory of amount each, and answers
// the products and their inventories.
func stocked(t *testing.T, g scenario.Gateway, n, amount int) (products, inventories []string) {
	for range n {
		p := g.Create(t, "/product", map[string]any{"name": "P", "price": 1})[0]
		products = append(products, p)
		inventories = append(inventories, g.Create(t, "/inventory", map[string]any{"product_id": p, "amount": amount})[0])
	}
	return products, inventories
}

// converged says whether every product's stock and the pieces its live
// orders hold add up to initial, and every reservation has its order.
func (s *system) converged(t *testing.T, g scenario.Gateway, products, inventories []string, initial int) bool {
	held := map[string]int{}
	orders := map[string]bool{}
	for _, o := range g.List(t, "/orders") {
		orders[o["id"].(string)] = true
		for _, p := range o["product_ids"].([]any) {
			held[p.(string)]++
		}
	}
	for i, p := range products {
		if int(g.Get(t, "/inventory/"+inventories[i])["amount"].(float64))+held[p] != initial {
			return false
		}
	}
	rdb, _ := redistest.Client(t)
	reserved, err := rdb.SMembers(t.Context(), s.prefix+"{inventory}:reservation_ids").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range reserved {
		if !orders[id] {
			return false
		}
	}
	return true
}

func TestADeleteWithInventoryDownReleasesOnceItIsBack(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	customers, _ := g.Customers(t, "delete", 1)
	products, inventories := stocked(t, g, 1, 10)
	order := g.Create(t, "/order", map[string]any{"customer_id": customers[0], "product_ids": []string{products[0], products[0]}})[0]
	s.Stop("inventory")
	platformtest.JSON(t, "DELETE", s.URL+"/order/"+order, nil, 200, nil)
	if o := g.Get(t, "/order/"+order); o != nil {
		t.Fatalf("the deleted order reads %v", o)
	}
	s.Start("inventory")
	redistest.Eventually(t, 20*time.Second, "the deleted order's stock back", func() bool {
		return s.converged(t, g, products, inventories, 10)
	})
}

func TestTheOrderServiceKilledAmidOrdersLeavesNoStockHeld(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	customers, _ := g.Customers(t, "kill", 1)
	products, inventories := stocked(t, g, 3, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		i := 0
		platformtest.Concurrently(t, 150, func() (string, string, any) {
			i++
			return "POST", s.URL + "/orders", map[string]any{"customer_id": customers[0],
				"product_ids": []string{products[i%3], products[(i+1)%3], products[(i+1)%3]}}
		})
	}()
	redistest.Eventually(t, 20*time.Second, "orders being recorded", func() bool { return len(g.List(t, "/orders")) >= 10 })
	s.Kill("order")
	<-done
	s.Start("order")
	redistest.Eventually(t, 30*time.Second, "the stock held is what the live orders hold", func() bool {
		return s.converged(t, g, products, inventories, 1000)
	})
}

func TestAReservationWhoseOrderNeverCameIsReleased(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	products, inventories := stocked(t, g, 1, 3)
	platformtest.JSON(t, "PUT", "http://"+s.addr["inventory"]+"/reservations/"+uuid.NewString(),
		map[string]any{"product_ids": []string{products[0], products[0]}}, 200, nil)
	if n := g.Get(t, "/inventory/"+inventories[0])["amount"]; n != float64(1) {
		t.Fatalf("stock %v after reserving 2 of 3", n)
	}
	redistest.Eventually(t, 30*time.Second, "the reservation released after the grace", func() bool {
		return s.converged(t, g, products, inventories, 3)
	})
}

// The gateway that sent an order may die after the order service committed
// it, before it kept the answer: the client's retry then reaches the order
// service again with the same Idempotency-Key. It answers the same order,
// orders nothing more and holds no more stock, and a payment-request mail
// goes once.
func TestAnOrderSentAgainToItsOwnerWithItsKeyIsOrderedOnce(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	customers, emails := g.Customers(t, "again", 1)
	products, inventories := stocked(t, g, 1, 5)
	order := map[string]any{"customer_id": customers[0], "product_ids": []string{products[0], products[0]}}
	key := http.Header{"Idempotency-Key": {uuid.NewString()}}
	var answers []string
	for range 3 {
		status, _, body, err := platformtest.SendWith("POST", "http://"+s.addr["order"]+"/orders", order, key)
		if err != nil || status != http.StatusOK {
			t.Fatalf("POST /orders: %d %s %v", status, body, err)
		}
		answers = append(answers, string(body))
	}
	if answers[1] != answers[0] || answers[2] != answers[0] {
		t.Fatalf("answers %q, want the first three times", answers)
	}
	if orders := g.List(t, "/orders"); len(orders) != 1 {
		t.Fatalf("%d orders, want 1", len(orders))
	}
	if amount := g.Get(t, "/inventory/"+inventories[0])["amount"]; amount != float64(3) {
		t.Fatalf("stock %v, want 3", amount)
	}
	g.WaitMails(t, 30*time.Second, "Please pay", emails)
	if n := g.CountMails(t, "Please pay"); n[emails[0]] != 1 {
		t.Fatalf("payment requests %v, want one", n)
	}
}

// An order whose reservation is answered late (a slow network, a stalled
// inventory) is recorded after the inventory's grace has passed; the
// sweeper must not have given its stock to another order meanwhile: the
// reservation waits for the time the order service records it by, and the
// order's append cannot land after that time. Stock 1: one of the two
// orders is recorded, never both.
func TestAnOrderAnsweredLateNeverSharesAPiece(t *testing.T) {
	t.Parallel()
	s := startSystem(t, "RESERVATION_GRACE=1s")
	g := scenario.Gateway(s.URL)
	customers, _ := g.Customers(t, "late", 1)
	products, inventories := stocked(t, g, 1, 1)
	// The order service reaches the inventory through a proxy that holds
	// the answer of its first reservation until released, for at most 5s.
	held, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	inventory, err := url.Parse("http://" + s.addr["inventory"])
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(inventory)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		late := false
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/reservations/") {
			first.Do(func() { late = true })
		}
		if !late {
			forward.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		forward.ServeHTTP(rec, r)
		close(held)
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer proxy.Close()
	s.Stop("order")
	s.env = append(s.env, "INVENTORY_URL="+proxy.URL)
	s.Start("order")

	order := map[string]any{"customer_id": customers[0], "product_ids": []string{products[0]}}
	answered := make(chan int)
	go func() {
		status, _ := platformtest.Do(t, "POST", s.URL+"/order", order)
		answered <- status
	}()
	<-held
	// Meanwhile another order asks for the piece, again and again, for
	// well beyond the grace.
	var second int
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline) && second != http.StatusOK; {
		second, _ = platformtest.Do(t, "POST", s.URL+"/order", order)
		select {
		case <-time.After(100 * time.Millisecond):
		case <-t.Context().Done():
		}
	}
	close(release)
	firstStatus := <-answered
	if firstStatus == http.StatusOK && second == http.StatusOK {
		t.Fatalf("both orders recorded with one piece in stock: %v", g.List(t, "/orders"))
	}
	redistest.Eventually(t, 20*time.Second, "the stock held is what the live orders hold", func() bool {
		return s.converged(t, g, products, inventories, 1)
	})
}
