package platform

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// newRouter is a router that answers every error in JSON, a panic too, and
// logs one line per request.
func newRouter(cfg Config, log *slog.Logger) chi.Router {
	r := chi.NewRouter()
	// Traced first, so that the log lines carry the request's trace.
	r.Use(Traced, accessLog(log), recoverer(log), middleware.RequestSize(cfg.MaxBodyBytes))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, Errorf(http.StatusNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, Errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
	})
	return r
}

// accessLog logs each request with its route pattern, not its path, so that
// lines group by route. Probes ask every few seconds: their lines are Debug.
func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				level = slog.LevelDebug
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			log.LogAttrs(r.Context(), level, "request", slog.String("method", r.Method),
				slog.String("route", chi.RouteContext(r.Context()).RoutePattern()), slog.Int("status", status),
				slog.Int("bytes", ww.BytesWritten()), slog.Duration("duration", time.Since(start)),
				slog.String("trace_id", TraceID(r.Context())))
		})
	}
}

// recoverer answers a handler's panic with the JSON 500 every other error
// gets, and logs the panic with its stack; chi's Recoverer answers a bare 500.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler { // net/http's own way to abort a response
					panic(p)
				}
				log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()), "trace_id", TraceID(r.Context()))
				WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// adminOnly lets requests to admin routes through only with the bearer
// token, when there is one, except to the paths that are public (see
// App.AdminPublic).
func adminOnly(token string, public func(path string) bool) func(http.Handler) http.Handler {
	// Hashes have one length, so the comparison takes the same time whatever
	// the token sent, even its length.
	want := sha256.Sum256([]byte("Bearer " + token))
	return func(next http.Handler) http.Handler {
		if token == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
			if !public(r.URL.Path) && subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", "Bearer")
				WriteError(w, r, Errorf(http.StatusUnauthorized, "admin routes need Authorization: Bearer <ADMIN_TOKEN>"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Transport is the transport of every outbound HTTP call: a peer that does
// not accept, handshake or answer within timeout is an error, never a hang.
func Transport(timeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	t.MaxIdleConnsPerHost = 64
	return t
}
