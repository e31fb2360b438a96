package platform

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/otel"
)

// newRouter is a router that answers every error in JSON, a panic too,
// traces each request, logs one line for it and measures it.
func newRouter(cfg Config, log *slog.Logger, m *Metrics) chi.Router {
	r := chi.NewRouter()
	// Traced first, so that the log lines carry the request's trace.
	r.Use(traced(otel.GetTracerProvider()), accessLog(log, m), recoverer(log), middleware.RequestSize(cfg.MaxBodyBytes))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, Errorf(http.StatusNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, Errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
	})
	return r
}

// accessLog logs and measures each request with its route pattern, not its
// path, so that lines and series group by route. Probes and scrapes ask
// every few seconds: their lines are Debug.
func accessLog(log *slog.Logger, m *Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			level := slog.LevelInfo
			if periodic(r) {
				level = slog.LevelDebug
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			took, route := time.Since(start), chi.RouteContext(r.Context()).RoutePattern()
			m.request(route, r.Method, status, took)
			log.LogAttrs(r.Context(), level, "request", slog.String("method", r.Method),
				slog.String("route", route), slog.Int("status", status),
				slog.Int("bytes", ww.BytesWritten()), slog.Duration("duration", took),
				slog.String("trace_id", TraceID(r.Context())))
		})
	}
}

// periodic says whether a request is one that orchestrators and Prometheus
// send every few seconds: a probe or a scrape.
func periodic(r *http.Request) bool {
	return r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics"
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
// Services call each other by a name that resolves to every replica of the
// callee (compose's --scale, a Kubernetes headless Service): each new
// connection looks the name up and takes the next of its addresses, and
// pooled connections are dropped every poolRefresh, so that a replica started
// since gets calls within seconds and one that moved is no longer called.
func Transport(timeout time.Duration) http.RoundTripper {
	return newTransport(timeout, poolRefresh, net.DefaultResolver.LookupHost)
}

// poolRefresh bounds how long a pooled connection is reused.
const poolRefresh = 5 * time.Second

func newTransport(timeout, refresh time.Duration, lookup func(context.Context, string) ([]string, error)) *refreshingTransport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&spreadDialer{dialer: &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}, lookup: lookup}).DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = refresh
	return &refreshingTransport{Transport: t, refresh: refresh}
}

// refreshingTransport closes the idle pooled connections at most every
// refresh, on the first call after it: a busy pool is never idle long
// enough for IdleConnTimeout, so this is what moves it to new replicas. No
// goroutine: a transport that is no longer used costs nothing.
type refreshingTransport struct {
	*http.Transport
	refresh time.Duration
	last    atomic.Int64 // when the pool was last refreshed, in Unix nanoseconds
}

func (t *refreshingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	now := time.Now().UnixNano()
	if last := t.last.Load(); now-last >= int64(t.refresh) && t.last.CompareAndSwap(last, now) {
		t.CloseIdleConnections()
	}
	r, err := inMemory(r)
	if err != nil {
		return nil, err
	}
	return t.Transport.RoundTrip(r)
}

// maxInMemory bounds the bodies inMemory reads first.
const maxInMemory = 64 << 10

// inMemory is r with its body read into memory when its length is known and
// at most maxInMemory. http.Transport writes the headers of a request and
// its body in one write only when it sees the body is in memory; otherwise
// (the body a proxy forwards, or one the tracing transport wraps) it sends
// the headers first and the body in a second write, which costs both sides
// a system call and the callee a read. A body in memory can also be sent
// again, which lets the transport retry a request on a pooled connection
// that turns out closed before anything was written.
func inMemory(r *http.Request) (*http.Request, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength <= 0 || r.ContentLength > maxInMemory {
		return r, nil
	}
	body := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	r2 := new(http.Request)
	*r2 = *r // as the request is not ours to change
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return r2, nil
}

// spreadDialer dials a host name at one of its addresses, round robin over
// them (sorted, so that the turn does not depend on the resolver's order),
// and at the next one when an address does not accept.
type spreadDialer struct {
	dialer *net.Dialer
	lookup func(context.Context, string) ([]string, error)
	next   atomic.Uint32
}

func (d *spreadDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || net.ParseIP(host) != nil {
		return d.dialer.DialContext(ctx, network, addr)
	}
	ips, err := d.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	slices.Sort(ips)
	start := int(d.next.Add(1))
	var errs []error
	for i := range ips {
		c, err := d.dialer.DialContext(ctx, network, net.JoinHostPort(ips[(start+i)%len(ips)], port))
		if err == nil {
			return c, nil
		}
		if errs = append(errs, err); ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dial %s: %w", addr, errors.Join(errs...))
}
