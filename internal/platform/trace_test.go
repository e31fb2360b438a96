package platform

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestTracingFollowsOTELTracesExporter(t *testing.T) {
	for _, c := range []struct {
		exporter, err string
	}{
		{"", ""}, {"none", ""}, {"console", ""}, {"jaeger", "want none, console or otlp"},
		{"otlp", map[bool]string{true: "", false: "built without OTLP"}[otlpExporter != nil]},
	} {
		t.Setenv("OTEL_TRACES_EXPORTER", c.exporter)
		tp, err := Tracing(t.Context(), "traced")
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("OTEL_TRACES_EXPORTER=%q: %v, want error %q", c.exporter, err, c.err)
		}
		if tp != nil {
			tp.Shutdown(t.Context())
		}
	}
}

// A Redis command alone is a span named after it; a pipeline is one span,
// redis.pipeline, that says how many commands it sent, and no attribute of
// it grows with them.
func TestRedisCommandsAndPipelinesAreSpans(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	rdb, prefix := redistest.Client(t)
	if err := instrument(rdb, tp); err != nil {
		t.Fatal(err)
	}
	// Connected (and a cluster's slots read) first, outside the parent.
	if err := rdb.Set(context.Background(), prefix+"k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	if err := rdb.Set(ctx, prefix+"k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for range 100 {
			p.Get(ctx, prefix+"k")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	parent.End()
	var names []string
	for _, s := range spans.Ended() {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			continue
		}
		names = append(names, s.Name())
		for _, a := range s.Attributes() {
			if len(a.Value.Emit()) > 100 || s.Name() == "redis.pipeline" && a.Key == "db.redis.num_cmd" && a.Value.AsInt64() != 100 {
				t.Errorf("span %s has %s=%.100s", s.Name(), a.Key, a.Value.Emit())
			}
		}
	}
	if strings.Join(names, ",") != "set,redis.pipeline" {
		t.Fatalf("spans %v, want set,redis.pipeline", names)
	}
}

// A request is a server span of the client's trace, or of a new one, named
// by its route, with its status, an error from 500 on; the handler runs in
// it. Probes are no spans.
func TestARequestIsAServerSpanNamedByItsRoute(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	r := chi.NewRouter()
	r.Use(traced(tp))
	var seen []string
	r.Get("/things/{id}", func(w http.ResponseWriter, r *http.Request) { seen = append(seen, TraceID(r.Context())) })
	r.Get("/boom", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	const client = "0af7651916cd43dd8448eb211c80319c"
	for _, path := range []string{"/things/1", "/boom", "/healthz"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("traceparent", "00-"+client+"-b7ad6b7169203331-01")
		r.ServeHTTP(httptest.NewRecorder(), req)
	}
	got := spans.Ended()
	if len(got) != 2 || len(seen) != 1 || seen[0] != client {
		t.Fatalf("%d spans, the handler saw trace %v; want 2 spans and %s", len(got), seen, client)
	}
	for i, want := range []struct {
		name   string
		status int64
		code   codes.Code
	}{{"GET /things/{id}", 200, codes.Unset}, {"GET /boom", 503, codes.Error}} {
		s := got[i]
		var status int64
		for _, a := range s.Attributes() {
			if a.Key == "http.response.status_code" {
				status = a.Value.AsInt64()
			}
		}
		if s.Name() != want.name || s.SpanKind() != trace.SpanKindServer || s.Parent().TraceID().String() != client ||
			status != want.status || s.Status().Code != want.code {
			t.Errorf("span %q (%v) of trace %s, status %d, %v; want %q, a server span of %s, %d, %v",
				s.Name(), s.SpanKind(), s.Parent().TraceID(), status, s.Status().Code, want.name, client, want.status, want.code)
		}
	}
}
