package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	pgtest.Stop()
	os.Exit(code)
}

// start runs the gateway with every service behind it at an address where
// nothing listens, except those given.
func start(t testing.TB, up map[string]string) (*platform.App, string) {
	app, srv := startWith(t, platformtest.Config(t), up, func(*config) {})
	return app, srv.URL
}

// startWith is start with the platform's config base and a change to the
// gateway's own.
func startWith(t testing.TB, base platform.Config, up map[string]string, change func(*config)) (*platform.App, *platformtest.Server) {
	rdb, _ := redistest.Client(t)
	return startOn(t, base, rdb, up, change)
}

// startOn is startWith on a Redis client of the test's own.
func startOn(t testing.TB, base platform.Config, rdb redis.UniversalClient, up map[string]string, change func(*config)) (*platform.App, *platformtest.Server) {
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
		InventoryURL: or("inventory"), OrderURL: or("order"), BillingURL: or("billing"), MsgURL: or("msg"),
		CRMAdminURL: or("crm-admin"), BillingAdminURL: or("billing-admin")}
	change(&cfg)
	app, srv, _ := platformtest.StartOn(t, "gateway", base, rdb, cfg, wire)
	return app, srv
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
	_, url := start(t, map[string]string{"order": owner.URL, "msg": owner.URL})
	platformtest.JSON(t, "PUT", url+"/order/"+id, `{}`, 200, nil)
	platformtest.JSON(t, "DELETE", url+"/orders/"+id, nil, 200, nil)
	platformtest.JSON(t, "GET", url+"/orders/unbilled", nil, 200, nil)
	platformtest.JSON(t, "GET", url+"/emails", nil, 200, nil)
	// Only reads of mails go on: sending them is for the services.
	platformtest.Rejected(t, "POST", url+"/emails", `[{"to": "ada@example.com", "msg": "hi", "key": "k"}]`, http.StatusMethodNotAllowed)
	platformtest.Rejected(t, "POST", url+"/emails/"+id, `{}`, http.StatusMethodNotAllowed)
	want := "PUT /order/" + id + ",DELETE /orders/" + id + ",GET /orders/unbilled,GET /emails"
	if strings.Join(got, ",") != want {
		t.Fatalf("the owner got %v, want %s", got, want)
	}
}

// A command goes on in the client's trace: the owner gets a traceparent of
// the same trace, whose parent is the gateway's span, not the client's.
func TestCommandsCarryTheirTraceToTheOwner(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
		platform.WriteJSON(w, http.StatusOK, true)
	}))
	t.Cleanup(owner.Close)
	_, url := start(t, map[string]string{"customer": owner.URL})
	const trace, client = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := http.NewRequest("POST", url+"/customer", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+trace+"-"+client+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tp := strings.Split(<-got, "-")
	if len(tp) != 4 || tp[1] != trace || tp[2] == client || tp[3] != "01" {
		t.Fatalf("the owner got traceparent %q, want one of trace %s under the gateway's span", strings.Join(tp, "-"), trace)
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

// The consumers' operator routes are on the gateway's admin listener, sent
// to theirs with the operator's token; they need it at the gateway too.
func TestOpsGoToTheConsumersAdminListenersWithTheToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		platform.WriteJSON(w, http.StatusOK, true)
	}))
	t.Cleanup(admin.Close)
	base := platformtest.Config(t)
	base.AdminToken = "s3cret"
	_, srv := startWith(t, base, map[string]string{"crm-admin": admin.URL, "billing-admin": admin.URL}, func(*config) {})
	for _, c := range []struct{ method, path string }{{"GET", "/ops/crm/stats"}, {"GET", "/ops/billing/deadletters"},
		{"POST", "/ops/crm/deadletters/customer/1-0/replay"}} {
		if status := status(t, c.method, srv.Admin.URL+c.path, "s3cret"); status != http.StatusOK {
			t.Errorf("%s %s with the token: %d", c.method, c.path, status)
		}
		if status := status(t, c.method, srv.Admin.URL+c.path, ""); status != http.StatusUnauthorized {
			t.Errorf("%s %s without the token: %d, want 401", c.method, c.path, status)
		}
	}
	want := "GET /ops/stats Bearer s3cret,GET /ops/deadletters Bearer s3cret,POST /ops/deadletters/customer/1-0/replay Bearer s3cret"
	if strings.Join(got, ",") != want {
		t.Fatalf("the admin listeners got %v, want %s", got, want)
	}
}

// Nothing for operators is on the public port, not even through a proxy.
func TestTheAPIAnswers404ForEveryAdminPath(t *testing.T) {
	t.Parallel()
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { platform.WriteJSON(w, http.StatusOK, true) }))
	t.Cleanup(admin.Close)
	_, srv := startWith(t, platformtest.Config(t), map[string]string{"crm": admin.URL, "billing": admin.URL, "crm-admin": admin.URL, "billing-admin": admin.URL}, func(*config) {})
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/", "/debug/pprof/heap", "/ops/crm/stats", "/ops/billing/stats",
		"/ops/crm/deadletters", "/ops/billing/deadletters", "/ops/stats", "/ops/deadletters", "/stats", "/deadletters"} {
		platformtest.Rejected(t, "GET", srv.URL+path, nil, http.StatusNotFound)
		if strings.HasPrefix(path, "/ops/crm/") || strings.HasPrefix(path, "/ops/billing/") || path == "/healthz" || path == "/readyz" || path == "/debug/pprof/" {
			platformtest.JSON(t, "GET", srv.Admin.URL+path, nil, http.StatusOK, nil)
		}
	}
	platformtest.Rejected(t, "POST", srv.URL+"/ops/crm/deadletters/customer/1-0/replay", nil, http.StatusNotFound)
}

func TestOverTheRateLimitIs429WithRetryAfter(t *testing.T) {
	t.Parallel()
	_, srv := startWith(t, platformtest.Config(t), nil, func(c *config) { c.RateLimit, c.RateWindow = 3, time.Minute })
	for range 3 {
		platformtest.JSON(t, "GET", srv.URL+"/customers", nil, http.StatusOK, nil)
	}
	resp, err := http.Get(srv.URL + "/customers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusTooManyRequests ||
		resp.Header.Get("Retry-After") != "60" || e.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("over the limit: %d, Retry-After %q, %q, error %q (%v); want 429, 60 and a JSON error",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), e.Error, err)
	}
	// The admin listener is not limited: probes must get through.
	platformtest.JSON(t, "GET", srv.Admin.URL+"/healthz", nil, http.StatusOK, nil)
}

// The gateway's metrics have every stream's length and every group's lag,
// read when scraped: also the lag of a consumer that is down.
func TestMetricsHaveEveryStreamAndGroup(t *testing.T) {
	t.Parallel()
	app, _ := start(t, nil)
	length := map[string]int{}
	for _, e := range []eventstore.Event{
		platformtest.Created(t, app.Cache, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: "ada@example.com"}),
		platformtest.Created(t, app.Cache, shop.Customers.Kind, shop.Customer{Name: "Bob", Email: "bob@example.com"}),
		platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "Tea", Price: 350}),
	} {
		length[app.Store.PartitionOf(e.EntityType, e.EntityID)]++
	}
	crm := app.Store.PartitionOf("customer", "") // a group of crm, which reads nothing: all its stream is lag
	if err := app.Redis.XGroupCreateMkStream(t.Context(), app.Store.StreamKey(crm), "crm", "0").Err(); err != nil {
		t.Fatal(err)
	}
	want := "# HELP ordershop_stream_length Entries in a stream, read at scrape time.\n# TYPE ordershop_stream_length gauge\n"
	for _, stream := range shop.Domain.Partitions(app.Store) {
		want += fmt.Sprintf("ordershop_stream_length{service=%q,stream=%q} %d\n", "gateway", app.Store.StreamKey(stream), length[stream])
	}
	want += "# HELP ordershop_consumer_group_lag Entries of a stream a consumer group has yet to read (XINFO GROUPS lag), read at scrape time.\n" +
		"# TYPE ordershop_consumer_group_lag gauge\n" +
		fmt.Sprintf("ordershop_consumer_group_lag{group=\"crm\",service=\"gateway\",stream=%q} %d\n", app.Store.StreamKey(crm), length[crm])
	if err := testutil.GatherAndCompare(app.Metrics.Registry, strings.NewReader(want), "ordershop_stream_length", "ordershop_consumer_group_lag"); err != nil {
		t.Error(err)
	}
}
