package platform_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// scrape reads the metrics of an admin listener as Prometheus does, in the
// text format.
func scrape(t *testing.T, adminURL, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", adminURL+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d %s, want 200 in the text format", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// value is the value of the series of a metric with the labels (name=value
// pairs), a histogram's count of observations; -1 if there is none.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// with is base and more, a new slice.
func with(base []string, more ...string) []string { return slices.Concat(base, more) }

// thing appends a thing_happened event of an entity to the stream "thing".
func thing(t *testing.T, store *eventstore.Store, entityIDs ...string) {
	t.Helper()
	var recs []eventstore.Record
	for _, id := range entityIDs {
		e, err := eventstore.NewEvent("thing_happened", "thing", id, map[string]string{"id": id})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, eventstore.Record{Event: e, Expected: eventstore.AnyVersion})
	}
	if _, err := store.Append(t.Context(), "thing", recs...); err != nil {
		t.Fatal(err)
	}
}

// metered is a service with one route and a consumer of the stream "thing"
// whose handler fails for the entity "poison", and until told otherwise for
// "stuck".
func metered(t *testing.T, base platform.Config, maxDeliveries int64) (*platform.App, *platformtest.Server, func()) {
	c := platform.Consuming{ConsumerName: "metered-1", ClaimIdle: time.Minute, RetryDelay: 10 * time.Millisecond,
		MaxRetryDelay: 10 * time.Millisecond, MaxDeliveries: maxDeliveries, Batch: 50}
	return platformtest.Stoppable(t, "metered", base, c, func(app *platform.App, c platform.Consuming) error {
		app.Router.Get("/things/{id}", platform.Handle(func(*http.Request) (any, error) { return "thing", nil }))
		r := eventstore.NewRouter()
		r.Handle("thing_happened", func(_ context.Context, e eventstore.Event) error {
			if e.EntityID == "poison" || e.EntityID == "stuck" {
				return errors.New("cannot handle " + e.EntityID)
			}
			return nil
		})
		return platform.Consume(app, c, "metered", []string{"thing"}, r)
	})
}

func TestMetricsCountRequestsAppendsAndHandledEvents(t *testing.T) {
	t.Parallel()
	base := platformtest.Config(t)
	base.AdminToken = "s3cret"
	app, srv, _ := metered(t, base, 2)
	for _, path := range []string{"/things/1", "/things/2", "/things/2", "/nothing"} {
		platformtest.Do(t, "GET", srv.URL+path, nil)
	}
	thing(t, app.Store, uuid.NewString(), uuid.NewString(), uuid.NewString())
	thing(t, app.Store, "poison")

	key := app.Store.StreamKey("thing")
	var m map[string]*dto.MetricFamily
	redistest.Eventually(t, 10*time.Second, "three events handled and one dead-lettered", func() bool {
		m = scrape(t, srv.Admin.URL, "s3cret")
		// The dead letter is in Redis a moment before the consumer counts it.
		return value(m, "ordershop_dead_letters", "stream", key, "group", "metered") == 1 &&
			value(m, "ordershop_events_handled_total", "stream", key, "group", "metered", "outcome", "dead_lettered") == 1 &&
			value(m, "ordershop_events_handled_total", "stream", key, "group", "metered", "outcome", "ok") == 3
	})
	service := []string{"service", "metered"}
	group := with(service, "stream", key, "group", "metered")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ordershop_http_request_duration_seconds", with(service, "route", "/things/{id}", "method", "GET", "code", "200"), 3},
		{"ordershop_http_request_duration_seconds", with(service, "route", "unmatched", "method", "GET", "code", "404"), 1},
		{"ordershop_events_appended_total", with(service, "stream", key), 4},
		{"ordershop_events_handled_total", with(group, "outcome", "ok"), 3},
		// MaxDeliveries 2: two failed deliveries, then the dead letter.
		{"ordershop_events_handled_total", with(group, "outcome", "error"), 2},
		{"ordershop_events_handled_total", with(group, "outcome", "dead_lettered"), 1},
		{"ordershop_event_handler_duration_seconds", group, 5},
		{"ordershop_stream_length", with(service, "stream", key), 4},
		{"ordershop_consumer_group_lag", group, 0},
		{"ordershop_consumer_group_pending", group, 0},
		{"ordershop_dead_letters", group, 1},
		{"go_goroutines", service, -2}, // any value: the Go collector is there
		{"process_open_fds", service, -2},
	} {
		got := value(m, c.name, c.labels...)
		if got != c.want && (c.want != -2 || got < 0) {
			t.Errorf("%s %v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	problems, err := testutil.GatherAndLint(app.Metrics.Registry)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

func TestLagAndPendingAreReadWhenScraped(t *testing.T) {
	t.Parallel()
	app, srv, stop := metered(t, platformtest.Config(t), 1000)
	key := app.Store.StreamKey("thing")
	group := []string{"service", "metered", "stream", key, "group", "metered"}
	thing(t, app.Store, "stuck")
	redistest.Eventually(t, 10*time.Second, "stuck delivered", func() bool {
		return value(scrape(t, srv.Admin.URL, ""), "ordershop_events_handled_total", with(group, "outcome", "error")...) >= 1
	})
	stop()
	thing(t, app.Store, uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString())

	// The consumer is stopped: the gauges come from Redis at each scrape.
	m := app.Metrics.Registry
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	if got := value(byName, "ordershop_stream_length", "stream", key); got != 6 {
		t.Errorf("stream length %v, want 6", got)
	}
	if got := value(byName, "ordershop_consumer_group_lag", group...); got != 5 {
		t.Errorf("lag %v, want the 5 events appended while stopped", got)
	}
	if got := value(byName, "ordershop_consumer_group_pending", group...); got != 1 {
		t.Errorf("pending %v, want 1: the stuck event", got)
	}
}

func TestMetricsAreOnTheAdminListenerOnlyAndNeedTheToken(t *testing.T) {
	t.Parallel()
	base := platformtest.Config(t)
	base.AdminToken = "s3cret"
	_, srv := platformtest.Start(t, "scraped", base, platform.NoConfig{}, func(*platform.App, platform.NoConfig) error { return nil })
	platformtest.Rejected(t, "GET", srv.URL+"/metrics", nil, http.StatusNotFound)
	platformtest.Rejected(t, "GET", srv.Admin.URL+"/metrics", nil, http.StatusUnauthorized)
	m := scrape(t, srv.Admin.URL, "s3cret")
	// Start asked /readyz until it was ready.
	if got := value(m, "ordershop_http_request_duration_seconds", "service", "scraped", "route", "/readyz", "method", "GET", "code", "200"); got < 1 {
		t.Errorf("no /readyz requests measured: %v", got)
	}
}

// A router that two consumers share keeps the middleware it was given:
// Consume wraps it, and each event is counted once, by its own consumer.
func TestConsumeLeavesTheRouterAsItWas(t *testing.T) {
	t.Parallel()
	base := platformtest.Config(t)
	r := eventstore.NewRouter()
	r.Handle("thing_happened", func(context.Context, eventstore.Event) error { return nil })
	var apps []*platform.App
	var srvs []*platformtest.Server
	for _, group := range []string{"first", "second"} {
		c := platform.Consuming{ConsumerName: group + "-1", ClaimIdle: time.Minute, RetryDelay: 10 * time.Millisecond,
			MaxRetryDelay: 10 * time.Millisecond, MaxDeliveries: 2, Batch: 50}
		app, srv := platformtest.Start(t, group, base, c, func(app *platform.App, c platform.Consuming) error {
			return platform.Consume(app, c, group, []string{"thing"}, r)
		})
		apps, srvs = append(apps, app), append(srvs, srv)
	}
	thing(t, apps[0].Store, uuid.NewString())
	key := apps[0].Store.StreamKey("thing")
	for i, group := range []string{"first", "second"} {
		redistest.Eventually(t, 10*time.Second, group+" handled the event", func() bool {
			return value(scrape(t, srvs[i].Admin.URL, ""), "ordershop_consumer_group_lag", "stream", key, "group", group) == 0
		})
	}
	for i, group := range []string{"first", "second"} {
		m := scrape(t, srvs[i].Admin.URL, "")
		if got := value(m, "ordershop_events_handled_total", "stream", key, "group", group, "outcome", "ok"); got != 1 {
			t.Errorf("%s counted %v events handled, want 1", group, got)
		}
	}
}
