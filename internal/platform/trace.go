package platform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
)

type traceKey struct{}

var traceParentRE = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// WithTrace carries a W3C traceparent in a context; an invalid or empty one
// is replaced by a new trace.
func WithTrace(ctx context.Context, traceparent string) context.Context {
	if !traceParentRE.MatchString(traceparent) {
		b := make([]byte, 24)
		rand.Read(b)
		traceparent = "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
	}
	return context.WithValue(ctx, traceKey{}, traceparent)
}

// TraceParent is the traceparent a context carries, or "".
func TraceParent(ctx context.Context) string {
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}

// TraceID is the trace id of the traceparent a context carries, or "".
func TraceID(ctx context.Context) string {
	if tp := TraceParent(ctx); len(tp) == 55 {
		return tp[3:35]
	}
	return ""
}

// TraceMeta is the event metadata that carries a context's trace: every
// event a command appends carries the command's.
func TraceMeta(ctx context.Context) map[string]string {
	if tp := TraceParent(ctx); tp != "" {
		return map[string]string{"traceparent": tp}
	}
	return nil
}

// Traced takes the traceparent of each request, or starts a trace.
func Traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(WithTrace(r.Context(), r.Header.Get("traceparent"))))
	})
}
