package platform

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
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

// The kinds of the spans this package starts, as options made once: the
// slice of options a call to Start makes would cost an allocation.
var (
	serverSpan   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	clientSpan   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

var traceSetup sync.Once

// useTracerProvider installs the process's tracer provider and the W3C
// propagator, the first time only: Run installs the one the OTEL_*
// variables ask for before it builds the app, and an app built otherwise
// (in tests) gets the one of no exporter, propagating.
func useTracerProvider(tp func() trace.TracerProvider) {
	traceSetup.Do(func() {
		otel.SetTracerProvider(tp())
		otel.SetTextMapPropagator(propagator)
	})
}

// Tracing builds the tracer provider that the standard variables ask for,
// and its shutdown, which flushes what is left to export:
// OTEL_TRACES_EXPORTER unset or "none" exports nothing (propagating),
// "console" writes spans to stdout, "otlp" sends them over OTLP/HTTP as the
// OTEL_EXPORTER_OTLP_* variables say (binaries built with -tags otlp only).
// With an exporter, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and
// OTEL_TRACES_SAMPLER are honoured; the service name defaults to service,
// the sampler to entrySampler.
func Tracing(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
	var exp sdktrace.SpanExporter
	var err error
	name := os.Getenv("OTEL_TRACES_EXPORTER")
	switch name {
	case "", "none":
		return propagating{}, func(context.Context) error { return nil }, nil
	case "console":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
	case "otlp":
		if otlpExporter == nil {
			return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=otlp: this binary was built without OTLP (go build -tags otlp)")
		}
		exp, err = otlpExporter(ctx)
	default:
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want none, console or otlp", name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: %w", name, err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithBatcher(exp)}
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(entrySampler{})))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return tp, tp.Shutdown, nil
}

// entrySampler starts a trace only where work enters a service: a request
// (a server span) or an event handled (a consumer span). The Redis commands
// that belong to neither, a consumer's read every second, its claims, would
// each be a trace of one span.
type entrySampler struct{}

func (entrySampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if entry(p.Kind) {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
	}
	return sdktrace.SamplingResult{Decision: sdktrace.Drop}
}

func (entrySampler) Description() string { return "EntrySampler" }

// entry says whether a span of kind is where work enters a service.
func entry(kind trace.SpanKind) bool {
	return kind == trace.SpanKindServer || kind == trace.SpanKindConsumer
}

// propagating is the tracer provider when nothing is exported: traces go on
// as with the SDK's, but no span records anything. A span continues the
// trace of its parent with a span id of its own, and keeps the parent's
// sampled flag and trace state, so that a service further on that exports
// records the trace as the client asked; a span without a parent starts a
// trace, sampled where work enters a service, as entrySampler's would be.
// The SDK has no such mode: a span its sampler drops loses the sampled
// flag, one it keeps is recorded, attributes and all, even with no
// processor to hand it to; and the API's no-op tracer starts no trace.
type propagating struct{ embedded.TracerProvider }

func (propagating) Tracer(string, ...trace.TracerOption) trace.Tracer { return propagatingTracer{} }

type propagatingTracer struct{ embedded.Tracer }

func (propagatingTracer) Start(ctx context.Context, _ string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	var sc trace.SpanContextConfig
	if parent := trace.SpanContextFromContext(ctx); parent.TraceID().IsValid() && !cfg.NewRoot() {
		sc = trace.SpanContextConfig{TraceID: parent.TraceID(), TraceFlags: parent.TraceFlags(), TraceState: parent.TraceState()}
	} else {
		for !sc.TraceID.IsValid() {
			binary.NativeEndian.PutUint64(sc.TraceID[:8], rand.Uint64())
			binary.NativeEndian.PutUint64(sc.TraceID[8:], rand.Uint64())
		}
		if entry(cfg.SpanKind()) {
			sc.TraceFlags = trace.FlagsSampled
		}
	}
	for !sc.SpanID.IsValid() {
		binary.NativeEndian.PutUint64(sc.SpanID[:], rand.Uint64())
	}
	var span trace.Span = propagatingSpan{sc: trace.NewSpanContext(sc)}
	return trace.ContextWithSpan(ctx, span), span
}

// propagatingSpan is a span of propagating: a no-op span with a span
// context, whose provider is propagating, so that a span that code starts
// from it (as tracedCalls does) is one too.
type propagatingSpan struct {
	noop.Span
	sc trace.SpanContext
}

func (s propagatingSpan) SpanContext() trace.SpanContext { return s.sc }

func (propagatingSpan) TracerProvider() trace.TracerProvider { return propagating{} }

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
		ctx, span := h.tracer.Start(ctx, "redis.pipeline", clientSpan...)
		defer span.End()
		if span.IsRecording() {
			span.SetAttributes(attribute.String("db.system", "redis"), attribute.Int("db.redis.num_cmd", len(cmds)))
		}
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
// seconds, are no traces. A span that does not record (no exporter) gets
// none of this: it only carries the trace. (otelhttp's handler made some 40
// allocations a request, a quarter of a small read's, mostly for metrics
// nothing reads.)
func traced(tp trace.TracerProvider) func(http.Handler) http.Handler {
	tracer := tp.Tracer(tracerName)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if periodic(r) {
				next.ServeHTTP(w, r)
				return
			}
			ctx := propagator.Extract(r.Context(), inbound{propagation.HeaderCarrier(r.Header)})
			ctx, span := tracer.Start(ctx, r.Method, serverSpan...)
			defer span.End()
			if !span.IsRecording() {
				next.ServeHTTP(w, r.WithContext(ctx))
				return
			}
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r.WithContext(ctx))
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path))
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

// inbound is the carrier that the trace of a request is read from. It asks
// for the W3C headers by their canonical names: http.Header.Get would make
// them of "traceparent" and "tracestate" anew on every request, an
// allocation each.
type inbound struct{ propagation.HeaderCarrier }

func (h inbound) Get(key string) string {
	switch key {
	case "traceparent":
		key = "Traceparent"
	case "tracestate":
		key = "Tracestate"
	default:
		return h.HeaderCarrier.Get(key)
	}
	if v := h.HeaderCarrier[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Outbound is the transport of a call to another service: Transport, with
// a client span for each call, which the traceparent header carries on.
// (otelhttp's transport did the same with 28 allocations and some 4 KiB
// more a call.)
func Outbound(timeout time.Duration) http.RoundTripper {
	return tracedCalls{Transport(timeout)}
}

// tracedCalls starts a client span for each call, by the provider of the
// caller's span (the process's without one), as otelhttp's transport did,
// and ends it once the answer's headers are in.
type tracedCalls struct{ next http.RoundTripper }

func (t tracedCalls) RoundTrip(r *http.Request) (*http.Response, error) {
	tp := otel.GetTracerProvider()
	if caller := trace.SpanFromContext(r.Context()); caller.SpanContext().IsValid() {
		tp = caller.TracerProvider()
	}
	ctx, span := tp.Tracer(tracerName).Start(r.Context(), r.Method, clientSpan...)
	defer span.End()
	r = r.Clone(ctx) // a RoundTripper leaves the caller's request as it is
	propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := t.next.RoundTrip(r)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("server.address", r.URL.Host),
			attribute.String("url.path", r.URL.Path))
		switch {
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		case resp.StatusCode >= http.StatusBadRequest:
			span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
			span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
		default:
			span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		}
	}
	return resp, err
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
			ctx, span := tracer.Start(ctx, "handle", consumerSpan...)
			defer span.End()
			if span.IsRecording() {
				span.SetName("handle " + e.Type)
				span.SetAttributes(attribute.String("messaging.system", "redis_streams"),
					attribute.String("messaging.destination.name", eventstore.StreamOf(ctx)),
					attribute.String("messaging.consumer.group.name", group),
					attribute.String("messaging.message.id", e.StreamID),
					attribute.String("event.id", e.ID), attribute.String("entity.id", e.EntityID))
			}
			err := next(ctx, e)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
	}
}
