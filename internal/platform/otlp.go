//go:build otlp

package platform

import (
	"context"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// OTLP over HTTP, configured by the OTEL_EXPORTER_OTLP_* variables.
func init() {
	otlpExporter = func(ctx context.Context) (sdktrace.SpanExporter, error) { return otlptracehttp.New(ctx) }
}
