package platform

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Traces follow a request through the services and the events it causes,
// with OpenTelemetry and the W3C traceparent header: each API request
// continues the client's trace or starts one, outbound calls carry it on,
// an append puts it in the event's meta.traceparent, and a consumer
// continues it in its handling of the event.

// propagator reads and writes the W3C traceparent (and tracestate).
var propagator = propagation.TraceContext{}

// tracerName names the spans this package starts.
const tracerName = "github.com/ordershop/ordershop/internal/platform"

var traceSetup sync.Once

// useTracerProvider installs the process's tracer provider and the W3C
// propagator, the first time only: Run installs the one the OTEL_*
// variables ask for before it builds the app, and an app built otherwise
// (in tests) gets one without an exporter, which still starts traces with
// valid ids, so that they propagate.
func useTracerProvider(tp func() trace.TracerProvider) {
	traceSetup.Do(func() {
		otel.SetTracerProvider(tp())
		otel.SetTextMapPropagator(propagator)
	})
}

// Tracing builds the tracer provider that the standard variables ask for:
// OTEL_TRACES_EXPORTER unset or "none" exports nothing, "console" writes
// spans to stdout, "otlp" sends them over OTLP/HTTP as the
// OTEL_EXPORTER_OTLP_* variables say (binaries built with -tags otlp only).
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER are
// honoured; the service name defaults to service, the sampler to
// entrySampler. Shutdown flushes what is left to export.
func Tracing(ctx context.Context, service string) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(entrySampler{})))
	}
	switch name := os.Getenv("OTEL_TRACES_EXPORTER"); name {
	case "", "none":
	case "console":
		exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case "otlp":
		if otlpExporter == nil {
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=otlp: this binary was built without OTLP (go build -tags otlp)")
		}
		exp, err := otlpExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=otlp: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want none, console or otlp", name)
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// entrySampler starts a trace only where work enters a service: a request
// (a server span) or an event handled (a consumer span). The Redis commands
// that belong to neither, a consumer's read every second, its claims, would
// each be a trace of one span.
type entrySampler struct{}

func (entrySampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if p.Kind == trace.SpanKindServer || p.Kind == trace.SpanKindConsumer {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
	}
	return sdktrace.SamplingResult{Decision: sdktrace.Drop}
}

func (entrySampler) Description() string { return "EntrySampler" }

// otlpExporter builds the OTLP exporter, in binaries built with -tags otlp:
// it adds some megabytes, which most deployments do not need.
var otlpExporter func(context.Context) (sdktrace.SpanExporter, error)

// instrument traces every command of a Redis client, with tp's tracer, by
// its name: not its arguments, which hold what clients sent (names,
// addresses), nor the caller's file and line, which costs a stack walk per
// command. A command alone is redisotel's span, a pipeline pipelineSpans's:
// redisotel would spell every command of a pipeline out, args and all, to
// name its span: a string of 100 kB for a list of 1,000 entities, made on
// every request.
func instrument(rdb redis.UniversalClient, tp trace.TracerProvider) error {
	pipelines := pipelineSpans{tp.Tracer(tracerName)}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		c.OnNewNode(func(node *redis.Client) { node.AddHook(pipelines) }) // as redisotel's: a span per node's part
	} else {
		rdb.AddHook(pipelines)
	}
	return redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tp), redisotel.WithCallerEnabled(false), redisotel.WithDBStatement(false),
		redisotel.WithCommandsFilter(func([]redis.Cmder) bool { return true }))
}

// pipelineSpans makes a span of each pipeline: "redis.pipeline", with the
// number of its commands.
type pipelineSpans struct{ tracer trace.Tracer }

func (pipelineSpans) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (pipelineSpans) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h pipelineSpans) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ctx, span := h.tracer.Start(ctx, "redis.pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "redis"), attribute.Int("db.redis.num_cmd", len(cmds))))
		defer span.End()
		err := next(ctx, cmds)
		if err != nil && err != redis.Nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	}
}

// traced continues the trace of each request, or starts one: a server span,
// named by the route once chi has routed it ("GET /customers/{id}"), that
// ends with the status, an error from 500 on. Probes and scrapes, every few
// seconds, are no traces. (otelhttp's handler made some 40 allocations a
// request, a quarter of a small read's, mostly for metrics nothing reads.)
func traced(tp trace.TracerProvider) func(http.Handler) http.Handler {
	tracer := tp.Tracer(tracerName)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if periodic(r) {
				next.ServeHTTP(w, r)
				return
			}
			ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
			defer span.End()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r.WithContext(ctx))
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			if route := chi.RouteContext(ctx).RoutePattern(); route != "" {
				span.SetName(r.Method + " " + route)
				span.SetAttributes(attribute.String("http.route", route))
			}
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		})
	}
}

// Outbound is the transport of a call to another service: Transport, which
// carries the caller's trace on in the traceparent header.
func Outbound(timeout time.Duration) http.RoundTripper {
	return otelhttp.NewTransport(Transport(timeout), otelhttp.WithPropagators(propagator))
}

// CarryTrace writes the trace of ctx into the headers of a request that
// goes out through Transport alone: a proxy's, whose own request span
// covers the call, so that one of its own would say nothing more.
func CarryTrace(ctx context.Context, h http.Header) {
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// WithTrace is a context that continues the trace of a W3C traceparent;
// with an invalid or empty one it is ctx.
func WithTrace(ctx context.Context, traceparent string) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// TraceParent is the W3C traceparent of the span a context carries, or "".
func TraceParent(ctx context.Context) string {
	return TraceMeta(ctx)["traceparent"]
}

// TraceID is the trace id of the span a context carries, or "".
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// TraceMeta is the event metadata that carries a context's trace: every
// event a command appends carries the command's span as its parent.
func TraceMeta(ctx context.Context) map[string]string {
	meta := propagation.MapCarrier{}
	propagator.Inject(ctx, meta)
	if len(meta) == 0 {
		return nil
	}
	return meta
}

// tracedEvents continues the trace of the command behind each event: the
// handling is a span, child of the span that appended the event, so that
// whatever the handler calls or appends carries the trace on.
func tracedEvents(group string) eventstore.Middleware {
	tracer := otel.Tracer(tracerName)
	return func(next eventstore.Handler) eventstore.Handler {
		return func(ctx context.Context, e eventstore.Event) error {
			ctx = propagator.Extract(ctx, propagation.MapCarrier(e.Meta))
			ctx, span := tracer.Start(ctx, "handle "+e.Type, trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attribute.String("messaging.system", "redis_streams"),
					attribute.String("messaging.destination.name", eventstore.StreamOf(ctx)),
					attribute.String("messaging.consumer.group.name", group),
					attribute.String("messaging.message.id", e.StreamID),
					attribute.String("event.id", e.ID), attribute.String("entity.id", e.EntityID)))
			defer span.End()
			err := next(ctx, e)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
	}
}
