package platform

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
		_, shutdown, err := Tracing(t.Context(), "traced")
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("OTEL_TRACES_EXPORTER=%q: %v, want error %q", c.exporter, err, c.err)
		}
		if shutdown != nil {
			shutdown(t.Context())
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

// With no exporter, nothing records, and yet traces go on as with one: a
// request continues the client's trace in a span of its own, with the
// client's sampled flag and trace state, or starts a sampled trace; the
// calls and appends it makes carry its span on, and their own spans keep
// its trace and flag.
func TestWithoutAnExporterTracesPropagateAndNothingRecords(t *testing.T) {
	for _, exporter := range []string{"", "none"} {
		t.Setenv("OTEL_TRACES_EXPORTER", exporter)
		tp, shutdown, err := Tracing(t.Context(), "propagating")
		if err != nil {
			t.Fatal(err)
		}
		defer shutdown(t.Context())
		var sc, cc trace.SpanContext
		var recording []bool
		var carried string
		r := chi.NewRouter()
		r.Use(traced(tp))
		r.Post("/things", func(w http.ResponseWriter, r *http.Request) {
			span := trace.SpanFromContext(r.Context())
			// As tracedCalls starts its span: by the provider of the span.
			_, call := span.TracerProvider().Tracer("test").Start(r.Context(), "call", trace.WithSpanKind(trace.SpanKindClient))
			sc, cc, recording = span.SpanContext(), call.SpanContext(), []bool{span.IsRecording(), call.IsRecording()}
			carried = TraceParent(r.Context())
		})
		const client, clientSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
		for _, c := range []struct{ traceparent, flags string }{
			{"", "01"}, {"00-" + client + "-" + clientSpan + "-01", "01"}, {"00-" + client + "-" + clientSpan + "-00", "00"},
		} {
			req := httptest.NewRequest("POST", "/things", nil)
			if c.traceparent != "" {
				req.Header.Set("traceparent", c.traceparent)
				req.Header.Set("tracestate", "vendor=x")
			}
			r.ServeHTTP(httptest.NewRecorder(), req)
			if recording[0] || recording[1] {
				t.Errorf("OTEL_TRACES_EXPORTER=%q, traceparent %q: the request's span records %v, a call's %v; want neither",
					exporter, c.traceparent, recording[0], recording[1])
			}
			want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + c.flags
			if !sc.IsValid() || carried != want || c.traceparent != "" && (sc.TraceID().String() != client || sc.SpanID().String() == clientSpan) {
				t.Errorf("OTEL_TRACES_EXPORTER=%q, traceparent %q: the request carries %q; want a span of its own of the client's trace, or of a new one, flags %s",
					exporter, c.traceparent, carried, c.flags)
			}
			if c.traceparent != "" && sc.TraceState().String() != "vendor=x" {
				t.Errorf("traceparent %q: trace state %q, want the client's, vendor=x", c.traceparent, sc.TraceState())
			}
			if cc.TraceID() != sc.TraceID() || cc.SpanID() == sc.SpanID() || cc.TraceFlags() != sc.TraceFlags() || !cc.SpanID().IsValid() {
				t.Errorf("traceparent %q: a call's span %s %s %s in the request's %s %s %s; want a span of its own of the same trace and flag",
					c.traceparent, cc.TraceID(), cc.SpanID(), cc.TraceFlags(), sc.TraceID(), sc.SpanID(), sc.TraceFlags())
			}
		}
	}
}

// A call to another service is a client span of the caller's trace, and the
// callee gets that span's traceparent; an answer of 5xx or no answer at all
// is an error of the span. The caller's request is left as it was.
func TestCallsAreClientSpansThatTheCalleeContinues(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx, caller := tp.Tracer("test").Start(context.Background(), "handle", consumerSpan...)
	c := &http.Client{Transport: Outbound(5 * time.Second)}
	for _, path := range []string{"/up", "/down"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(req.Header) != 0 {
			t.Errorf("the caller's request got headers %v", req.Header)
		}
		ended := spans.Ended()
		span := ended[len(ended)-1]
		want := "00-" + caller.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
		if tp := <-got; tp != want || span.SpanKind() != trace.SpanKindClient || span.Parent().SpanID() != caller.SpanContext().SpanID() {
			t.Errorf("%s: the callee got traceparent %q; want %q, of a client span (%v) of the caller's", path, tp, want, span.SpanKind())
		}
		if wantCode := map[string]codes.Code{"/up": codes.Unset, "/down": codes.Error}[path]; span.Status().Code != wantCode {
			t.Errorf("%s: span status %v, want %v", path, span.Status().Code, wantCode)
		}
	}
	srv.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/gone", nil)
	if _, err := c.Do(req); err == nil {
		t.Fatal("a call to a closed server succeeded")
	}
	if ended := spans.Ended(); ended[len(ended)-1].Status().Code != codes.Error {
		t.Errorf("a call with no answer: span status %v, want Error", ended[len(ended)-1].Status().Code)
	}
}
