package platform

import (
	"strings"
	"testing"
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
