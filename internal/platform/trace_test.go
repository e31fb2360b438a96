package platform

import (
	"context"
	"strings"
	"testing"

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
		// Not those of making a connection, which the commands wait for.
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.Name() == "redis.dial" {
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
