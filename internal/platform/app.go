package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/pkg/archive"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// App is what a service's wiring gets: its Redis, event store and cache, an
// HTTP client for the services it calls, and two routers: Router, the API on
// Config.Addr, and Admin, for operators on Config.AdminAddr, which is never
// public; it already answers /healthz, /readyz, /metrics and /debug/pprof/,
// and takes the /ops routes. Wiring adds routes, readiness checks and
// background work such as a consumer.
type App struct {
	Name   string
	Config Config
	Log    *slog.Logger
	Redis  redis.UniversalClient
	Store  *eventstore.Store
	Cache  *entitycache.Cache
	HTTP   *http.Client
	Router chi.Router
	Admin  chi.Router
	// Metrics are served on Admin at /metrics.
	Metrics *Metrics
	// Archive is the PostgreSQL of ARCHIVE_URL (UseArchive), nil without one.
	Archive *pgxpool.Pool

	ready      []func(context.Context) error
	background []func(context.Context) error
	public     map[string]bool // admin paths served without the token
	stopping   chan struct{}
	stop       sync.Once
}

// NewApp builds an app on a Redis client.
func NewApp(name string, cfg Config, rdb redis.UniversalClient, log *slog.Logger) *App {
	useTracerProvider(func() trace.TracerProvider { return propagating{} })
	metrics := newMetrics(name)
	store := eventstore.New(rdb, cfg.KeyPrefix, eventstore.WithMeta(TraceMeta), eventstore.WithAppended(metrics.eventsAppended),
		eventstore.WithPartitions(cfg.Partitions), eventstore.WithReplicas(cfg.MinReplicas, cfg.ReplicaTimeout))
	a := &App{
		Name: name, Config: cfg, Log: log, Redis: rdb, Store: store, Cache: entitycache.New(store),
		HTTP:    &http.Client{Timeout: cfg.RequestTimeout, Transport: Outbound(cfg.RequestTimeout)},
		Router:  newRouter(cfg, log, metrics),
		Admin:   newRouter(cfg, log, metrics),
		Metrics: metrics,
		public:  map[string]bool{"/healthz": true, "/readyz": true}, stopping: make(chan struct{}),
	}
	a.Admin.Use(adminOnly(cfg.AdminToken, func(path string) bool { return a.public[path] }))
	a.Admin.Handle("/metrics", metrics.handler())
	a.Admin.Get("/healthz", Handle(func(*http.Request) (any, error) { return map[string]string{"status": "alive"}, nil }))
	a.Admin.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Ready(r.Context()); err != nil {
			// The prober sees our words only; what Redis said goes to the log.
			msg := "not ready"
			var e *Error
			if errors.As(err, &e) {
				msg = e.Msg
			}
			a.Log.WarnContext(r.Context(), "not ready", "err", err)
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msg})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	a.Admin.Mount("/debug", middleware.Profiler())
	a.OnReady(func(ctx context.Context) error {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("%w: %w", errRedisUnreachable, err)
		}
		return nil
	})
	return a
}

var (
	errRedisUnreachable = &Error{Status: http.StatusServiceUnavailable, Msg: "redis unreachable"}
	errNotReading       = &Error{Status: http.StatusServiceUnavailable, Msg: "consumer not reading"}
)

// UseArchive gives the app the archive of the events trimmed from the
// streams, and its store reads through it: Replay, and so -rebuild and
// -verify, read the archive and then the stream, and consumer groups behind
// a stream's start catch up from it.
func (a *App) UseArchive(db *pgxpool.Pool) {
	a.Archive = db
	a.Store.UseArchive(archive.Reader{DB: db})
}

// AdminPublic serves h on the admin listener at path without the token: for
// the probes, which orchestrators ask without credentials, and for pages that
// hold no data and send the token themselves with what they fetch.
func (a *App) AdminPublic(path string, h http.HandlerFunc) {
	a.public[path] = true
	a.Admin.Get(path, h)
}

// Stopping is closed when the app begins to shut down. Responses that never
// end by themselves, such as an event stream, end then, so that the graceful
// stop need not wait for them.
func (a *App) Stopping() <-chan struct{} { return a.stopping }

// OnReady adds a readiness check.
func (a *App) OnReady(check func(context.Context) error) { a.ready = append(a.ready, check) }

// Ready runs the readiness checks.
func (a *App) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for _, check := range a.ready {
		if err := check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Go adds background work that runs while the app serves and must return
// when its context ends.
func (a *App) Go(work func(context.Context) error) { a.background = append(a.background, work) }

// Every runs do every period until ctx ends, the first time a period after
// the start.
func Every(ctx context.Context, period time.Duration, do func(context.Context)) error {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			do(ctx)
		}
	}
}

// Start runs the background work until ctx ends; wait waits for it.
func (a *App) Start(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for _, work := range a.background {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := work(ctx); err != nil {
				a.Log.Error("background work stopped", "err", err)
			}
		}()
	}
	return wg.Wait
}

// Serve serves the API and the admin listener and runs the background work
// until ctx ends, then shuts both down gracefully within the configured
// deadline. If one listener fails, the other is stopped too.
func (a *App) Serve(ctx context.Context) error {
	servers := []*http.Server{server(a.Config.Addr, a.Router), server(a.Config.AdminAddr, a.Admin)}
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	wait := a.Start(work)
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ListenAndServe() }()
	}
	a.Log.Info("serving", "addr", a.Config.Addr, "admin_addr", a.Config.AdminAddr)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		a.Log.Info("shutting down")
	}
	a.stop.Do(func() { close(a.stopping) })
	shutdown, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		err = errors.Join(err, srv.Shutdown(shutdown))
	}
	stopWork()
	wait()
	return err
}

func server(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
	}
}

// OwnPool is a client like rdb with a pool of its own: reads that block for
// seconds must not hold the connections that the API's queries wait for.
func OwnPool(rdb redis.UniversalClient, size int) redis.UniversalClient {
	switch c := rdb.(type) {
	case *redis.Client:
		opt := *c.Options()
		opt.PoolSize = size
		return redis.NewClient(&opt)
	case *redis.ClusterClient:
		opt := *c.Options()
		opt.PoolSize = size
		return redis.NewClusterClient(&opt)
	}
	return rdb
}
