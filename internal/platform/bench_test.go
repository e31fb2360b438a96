package platform

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// What the platform costs a request, the handler's work aside: a small POST
// through the router every service has, traced, measured and logged as by
// default (no exporter), with the span of a Redis command, its log line
// thrown away, with and without the client's traceparent. For
// profiles: go test -bench Request -cpuprofile, -memprofile.
func BenchmarkRequest(b *testing.B) {
	b.Setenv("OTEL_TRACES_EXPORTER", "")
	b.Setenv("OTEL_TRACES_SAMPLER", "")
	tp, shutdown, err := Tracing(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(b.Context())
	defer otel.SetTracerProvider(otel.GetTracerProvider())
	otel.SetTracerProvider(tp)
	r := newRouter(Config{MaxBodyBytes: 1 << 20}, slog.New(slog.NewJSONHandler(io.Discard, nil)), newMetrics("bench"))
	r.Post("/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, span := tp.Tracer("bench").Start(r.Context(), "get", trace.WithSpanKind(trace.SpanKindClient)) // a Redis command's
		span.End()
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`["1"]` + "\n"))
	})
	body := []byte(`{"name":"thing"}`)
	for _, c := range []struct{ name, traceparent string }{
		{"new trace", ""},
		{"client's trace", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/things/1", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if c.traceparent != "" {
					req.Header.Set("traceparent", c.traceparent)
				}
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body)
				}
			}
		})
	}
}

// The access log's line, written as Run's log writes it, to a pipe drained
// by a reader, as stdout is in a container; beside it, for comparison, the
// line written at once, a system call each, as the log did before it was
// buffered.
func BenchmarkLogLine(b *testing.B) {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	go io.Copy(io.Discard, r)
	buffered, out := newLog(w, logFlush)
	defer out.Close()
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))
	for _, c := range []struct {
		name string
		log  *slog.Logger
	}{
		{"unbuffered", slog.New(slog.NewJSONHandler(w, nil))},
		{"buffered", buffered},
	} {
		log := c.log.With("service", "bench")
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("method", "POST"),
					slog.String("route", "/customers"), slog.Int("status", 200),
					slog.Int("bytes", 39), slog.Duration("duration", 812*time.Microsecond),
					slog.String("trace_id", TraceID(ctx)))
			}
		})
	}
}

// What a call to another service costs the caller beside the call itself:
// Outbound, with the caller's span, to a server on loopback that answers
// at once; BenchmarkCall/bare is the same call through Transport alone.
func BenchmarkCall(b *testing.B) {
	b.Setenv("OTEL_TRACES_EXPORTER", "")
	tp, shutdown, err := Tracing(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(b.Context())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"id":"1"}`))
	}))
	defer srv.Close()
	ctx, span := tp.Tracer("bench").Start(b.Context(), "handle", consumerSpan...)
	defer span.End()
	for name, rt := range map[string]http.RoundTripper{"outbound": Outbound(5 * time.Second), "bare": Transport(5 * time.Second)} {
		b.Run(name, func(b *testing.B) {
			c := &http.Client{Transport: rt}
			b.ReportAllocs()
			for b.Loop() {
				if err := Call(ctx, c, http.MethodPost, srv.URL+"/email", map[string]string{"to": "a@example.com"}, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
