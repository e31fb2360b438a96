package system

import (
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/ordershop/ordershop/tests/scenario"
)

func TestOriginalScenario(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	scenario.Original(t, scenario.Gateway(s.URL))
}

func TestStoppedCRMCatchesUp(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	s.Stop("crm")
	_, emails := g.Customers(t, "catchup", 50)
	if n := g.CountMails(t, "Welcome"); len(n) != 0 {
		t.Fatalf("welcome mails sent while CRM was down: %v", n)
	}
	s.Start("crm")
	g.WaitMails(t, 30*time.Second, "Welcome", emails)
	if n := g.CountMails(t, "Welcome"); len(n) != 50 {
		t.Fatalf("%d customers got a welcome mail, want 50", len(n))
	}
}

func TestConcurrentOrdersNeverOversell(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	rdb, _ := redistest.Client(t) // the Redis the services use, under their KEY_PREFIX
	store := eventstore.New(rdb, s.prefix, eventstore.WithPartitions(redistest.Partitions()))
	scenario.Oversell(t, scenario.Gateway(s.URL), rdb, store.StreamKey(store.Partitions("inventory")[0]))
}

// An order of thousands of pieces is stored whole, or refused with nothing
// written and no stock held: its lists are far longer than one Lua call
// takes arguments.
func TestOrderOfThousandsOfPiecesIsWholeOrRefused(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	customers, _ := g.Customers(t, "bulk", 1)
	product := g.Create(t, "/product", map[string]any{"name": "Rice grain", "price": 1})[0]
	inventory := g.Create(t, "/inventory", map[string]any{"product_id": product, "amount": 10000})[0]
	pieces := func(n int) []string { return slices.Repeat([]string{product}, n) }

	order := g.Create(t, "/order", map[string]any{"customer_id": customers[0], "product_ids": pieces(8000)})[0]
	if got := g.Get(t, "/order/"+order)["product_ids"].([]any); len(got) != 8000 {
		t.Fatalf("the order holds %d pieces, want 8000", len(got))
	}
	if amount := g.Get(t, "/inventory/"+inventory)["amount"]; amount != float64(2000) {
		t.Fatalf("stock %v after an order of 8000 of 10000, want 2000", amount)
	}
	platformtest.Rejected(t, "POST", s.URL+"/order", map[string]any{"customer_id": customers[0], "product_ids": pieces(3000)}, http.StatusConflict)
	if amount := g.Get(t, "/inventory/"+inventory)["amount"]; amount != float64(2000) {
		t.Fatalf("stock %v after a refused order, want 2000", amount)
	}
	if n := len(g.List(t, "/orders")); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
	g.Do(t, "DELETE", "/order/"+order, nil)
	if amount := g.Get(t, "/inventory/"+inventory)["amount"]; amount != float64(10000) {
		t.Fatalf("stock %v after the order was deleted, want 10000", amount)
	}
}

func TestReadYourWritesThroughTheGateway(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	product := g.Create(t, "/product", map[string]any{"name": "P", "price": 1})[0]
	for i := range 500 {
		g.Do(t, "PUT", "/product/"+product, map[string]any{"name": "P", "price": i})
		if p := g.Get(t, "/product/"+product); p["price"] != float64(i) {
			t.Fatalf("write %d: read %v", i, p["price"])
		}
	}
	for range 100 {
		id := g.Create(t, "/product", map[string]any{"name": "Q", "price": 1})[0]
		g.Do(t, "DELETE", "/products/"+id, nil)
		if p := g.Get(t, "/product/"+id); p != nil {
			t.Fatalf("deleted product read back: %v", p)
		}
	}
}

func TestAServiceDownIsA503AndQueriesGoOn(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	product := g.Create(t, "/product", map[string]any{"name": "P", "price": 1})[0]
	s.Stop("product")
	platformtest.Rejected(t, "POST", s.URL+"/product", map[string]any{"name": "P", "price": 1}, http.StatusServiceUnavailable)
	if p := g.Get(t, "/product/"+product); p["name"] != "P" {
		t.Fatalf("query with the product service down: %v", p)
	}
	s.Start("product")
	g.Create(t, "/product", map[string]any{"name": "P", "price": 1})
}

func TestAFailedOrderReleasesWhatItReserved(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	customers, _ := g.Customers(t, "release", 1)
	plenty := g.Create(t, "/product", map[string]any{"name": "Plenty", "price": 1})[0]
	scarce := g.Create(t, "/product", map[string]any{"name": "Scarce", "price": 1})[0]
	stock := g.Create(t, "/inventory", []map[string]any{{"product_id": plenty, "amount": 10}, {"product_id": scarce, "amount": 1}})
	// The first order of the batch can be served, the second cannot: neither is.
	platformtest.Rejected(t, "POST", s.URL+"/orders", []map[string]any{
		{"customer_id": customers[0], "product_ids": []string{plenty, plenty}},
		{"customer_id": customers[0], "product_ids": []string{scarce, scarce}},
	}, http.StatusConflict)
	if n := g.Get(t, "/inventory/"+stock[0])["amount"]; n != float64(10) {
		t.Fatalf("stock of the first order's product is %v after the batch failed, want 10", n)
	}
	if n := len(g.List(t, "/orders")); n != 0 {
		t.Fatalf("%d orders recorded by a failed batch", n)
	}
	// An update that cannot be served keeps the order and its reservation as they were.
	order := g.Create(t, "/order", map[string]any{"customer_id": customers[0], "product_ids": []string{plenty}})[0]
	platformtest.Rejected(t, "PUT", s.URL+"/order/"+order, map[string]any{"customer_id": customers[0], "product_ids": []string{scarce, scarce}}, http.StatusConflict)
	if n := g.Get(t, "/inventory/"+stock[0])["amount"]; n != float64(9) {
		t.Fatalf("stock %v after a failed update, want 9", n)
	}
	g.Do(t, "DELETE", "/order/"+order, nil)
	if n := g.Get(t, "/inventory/"+stock[0])["amount"]; n != float64(10) {
		t.Fatalf("stock %v after the order was deleted, want 10", n)
	}
}

func TestTheCacheIsRebuiltFromTheStreams(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	scenario.Original(t, g)
	var before, after map[string]any
	platformtest.JSON(t, "GET", s.URL+"/report", nil, 200, &before)
	mails := g.Mails(t)

	// Lose every key but the streams: the cache and the versions.
	rdb, _ := redistest.Client(t)
	keys, err := eventstore.New(rdb, "").Scan(t.Context(), s.prefix+"{*}:*") // on every node of a cluster
	if err != nil || len(keys) < 50 {
		t.Fatalf("%d cache keys (%v)", len(keys), err)
	}
	for _, k := range keys { // keys of several hash slots: one DEL each
		rdb.Del(t.Context(), k)
	}
	if n := len(g.List(t, "/customers")); n != 0 {
		t.Fatalf("%d customers listed without a cache", n)
	}
	s.Run("gateway", "-rebuild")
	platformtest.JSON(t, "GET", s.URL+"/report", nil, 200, &after)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("report after the rebuild differs:\nbefore %v\nafter  %v", before, after)
	}
	if got := g.Mails(t); !reflect.DeepEqual(got, mails) {
		t.Fatalf("%d mails after the rebuild, %d before", len(got), len(mails))
	}
	// Commands on entities from before go on from the rebuilt versions.
	product := after["products"].([]any)[0].(map[string]any)
	g.Do(t, "PUT", "/product/"+product["id"].(string), map[string]any{"name": "After", "price": 2})
}

// Every service's API port answers 404 in JSON for every admin path; its
// admin listener answers them, and -healthcheck asks it.
func TestAdminRoutesAreOnlyOnTheAdminListeners(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	paths := []string{"/healthz", "/readyz", "/debug/pprof/", "/metrics", "/ops/stats", "/ops/deadletters", "/stats", "/deadletters",
		"/ops/crm/stats", "/ops/billing/stats", "/ops/crm/deadletters", "/ops/billing/deadletters"}
	for _, name := range services {
		for _, path := range paths {
			platformtest.Rejected(t, "GET", "http://"+s.addr[name]+path, nil, http.StatusNotFound)
		}
		platformtest.Rejected(t, "POST", "http://"+s.addr[name]+"/ops/deadletters/customer/1-0/replay", nil, http.StatusNotFound)
		for _, path := range []string{"/healthz", "/readyz"} {
			platformtest.JSON(t, "GET", "http://"+s.admin[name]+path, nil, http.StatusOK, nil)
		}
		s.Run(name, "-healthcheck")
	}
	for _, path := range []string{"/ops/crm/stats", "/ops/billing/stats", "/ops/crm/deadletters"} {
		platformtest.JSON(t, "GET", s.Admin+path, nil, http.StatusOK, nil)
	}
	platformtest.JSON(t, "GET", "http://"+s.admin["crm"]+"/ops/stats", nil, http.StatusOK, nil)
}

// Every list pages through the gateway, also those it forwards (mails,
// unbilled orders): the next links hold there, and the pages add up to the
// whole list.
func TestListsPageThroughTheGateway(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	g := scenario.Gateway(s.URL)
	product := g.Create(t, "/product", map[string]any{"name": "Tea", "price": 1})[0]
	g.Create(t, "/inventory", map[string]any{"product_id": product, "amount": 10})
	customers, emails := g.Customers(t, "pages", 5)
	for _, c := range customers {
		g.Create(t, "/order", map[string]any{"customer_id": c, "product_ids": []string{product}})
	}
	g.WaitMails(t, 30*time.Second, "Welcome", emails)
	g.WaitMails(t, 30*time.Second, "Thank you", emails)
	for _, path := range []string{"/customers?", "/emails?", "/orders/unbilled?", "/emails?to=" + emails[2] + "&"} {
		got := []map[string]any{}
		pages := platformtest.Pages(t, s.URL+path+"limit=2")
		for _, page := range pages {
			got = append(got, page...)
		}
		var all []map[string]any
		platformtest.JSON(t, "GET", s.URL+path, nil, 200, &all)
		if len(pages) < 2 && len(all) > 2 || !reflect.DeepEqual(got, all) {
			t.Fatalf("%s in %d pages of 2: %v, whole: %v", path, len(pages), got, all)
		}
	}
	for _, m := range g.List(t, "/emails?to="+emails[2]) {
		if m["to"] != emails[2] {
			t.Fatalf("a mail to %v among those to %s", m["to"], emails[2])
		}
	}
}
