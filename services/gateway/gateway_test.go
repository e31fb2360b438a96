package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// start runs the gateway with every service behind it at an address where
// nothing listens, except those given.
func start(t *testing.T, up map[string]string) (*platform.App, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	or := func(name string) string {
		if u, ok := up[name]; ok {
			return u
		}
		return down
	}
	cfg := config{CustomerURL: or("customer"), ProductURL: or("product"),
		InventoryURL: or("inventory"), OrderURL: or("order"), BillingURL: or("billing"), MsgURL: or("msg"), CRMURL: or("crm")}
	app, srv := platformtest.Start(t, "gateway", platformtest.Config(t), cfg, wire)
	return app, srv.URL
}

func TestQueriesReadTheCacheWithEveryServiceDown(t *testing.T) {
	t.Parallel()
	app, url := start(t, nil)
	c := platformtest.Created(t, app.Cache, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: "ada@example.com"})
	platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "Tea", Price: 350})
	var got map[string]any
	platformtest.JSON(t, "GET", url+"/customers/"+c.EntityID, nil, 200, &got)
	if got["email"] != "ada@example.com" {
		t.Fatalf("customer %v", got)
	}
	var report map[string][]map[string]any
	platformtest.JSON(t, "GET", url+"/report", nil, 200, &report)
	if len(report["customers"]) != 1 || len(report["products"]) != 1 || report["products"][0]["price"] != float64(350) ||
		report["orders"] == nil || len(report["orders"]) != 0 {
		t.Fatalf("report %v", report)
	}
	// Commands cannot reach their services: 503 in JSON, at once.
	for _, path := range []string{"/customer", "/products", "/inventory", "/orders", "/billing"} {
		platformtest.Rejected(t, "POST", url+path, `{}`, http.StatusServiceUnavailable)
	}
	platformtest.Rejected(t, "GET", url+"/orders/unbilled", nil, http.StatusServiceUnavailable)
	platformtest.Rejected(t, "GET", url+"/emails", nil, http.StatusServiceUnavailable)
}

func TestCommandsGoToTheirOwner(t *testing.T) {
	t.Parallel()
	var got []string
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		platform.WriteJSON(w, http.StatusOK, true)
	}))
	t.Cleanup(owner.Close)
	id := "2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11"
	_, url := start(t, map[string]string{"order": owner.URL, "crm": owner.URL})
	platformtest.JSON(t, "PUT", url+"/order/"+id, `{}`, 200, nil)
	platformtest.JSON(t, "DELETE", url+"/orders/"+id, nil, 200, nil)
	platformtest.JSON(t, "GET", url+"/orders/unbilled", nil, 200, nil)
	platformtest.JSON(t, "GET", url+"/ops/crm/stats", nil, 200, nil)
	want := "PUT /order/" + id + ",DELETE /orders/" + id + ",GET /orders/unbilled,GET /stats"
	if strings.Join(got, ",") != want {
		t.Fatalf("the owner got %v, want %s", got, want)
	}
}

func TestBadInputAtTheGateway(t *testing.T) {
	t.Parallel()
	_, url := start(t, nil)
	platformtest.Rejected(t, "GET", url+"/customer/not-a-uuid", nil, http.StatusBadRequest)
	platformtest.Rejected(t, "GET", url+"/orders/2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11", nil, http.StatusNotFound)
	platformtest.Rejected(t, "PATCH", url+"/customers", `{}`, http.StatusMethodNotAllowed)
	platformtest.Rejected(t, "GET", url+"/nothing", nil, http.StatusNotFound)
	big := `[` + strings.Repeat(`{"name": "x", "email": "a@b.c"},`, 3000) + `{}]`
	platformtest.Rejected(t, "POST", url+"/customers", big, http.StatusRequestEntityTooLarge)
}
