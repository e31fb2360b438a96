package platform

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// App is what a service's wiring gets: its Redis, event store and cache, an
// HTTP client for the services it calls, and a router that already answers
// /healthz and /readyz. Wiring adds routes, readiness checks and background
// work such as a consumer.
type App struct {
	Name   string
	Config Config
	Log    *slog.Logger
	Redis  redis.UniversalClient
	Store  *eventstore.Store
	Cache  *entitycache.Cache
	HTTP   *http.Client
	Router chi.Router

	ready      []func(context.Context) error
	background []func(context.Context) error
}

// NewApp builds an app on a Redis client.
func NewApp(name string, cfg Config, rdb redis.UniversalClient, log *slog.Logger) *App {
	store := eventstore.New(rdb, cfg.KeyPrefix, eventstore.WithMeta(TraceMeta))
	a := &App{
		Name: name, Config: cfg, Log: log, Redis: rdb, Store: store, Cache: entitycache.New(store),
		HTTP:   &http.Client{Timeout: cfg.RequestTimeout},
		Router: chi.NewRouter(),
	}
	a.Router.Use(middleware.Recoverer, middleware.RequestSize(cfg.MaxBodyBytes), Traced)
	a.Router.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, Errorf(http.StatusNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	a.Router.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, Errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
	})
	a.Router.Get("/healthz", Handle(func(*http.Request) (any, error) { return map[string]string{"status": "alive"}, nil }))
	a.Router.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Ready(r.Context()); err != nil { // not logged: probes ask often
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not ready: " + err.Error()})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	a.OnReady(func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	return a
}

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

// Serve serves HTTP and runs the background work until ctx ends, then shuts
// down gracefully within the configured deadline.
func (a *App) Serve(ctx context.Context) error {
	srv := &http.Server{
		Addr: a.Config.Addr, Handler: a.Router,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
	}
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	wait := a.Start(work)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	a.Log.Info("serving", "addr", a.Config.Addr)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		a.Log.Info("shutting down")
		shutdown, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
		defer cancel()
		err = srv.Shutdown(shutdown)
	}
	stopWork()
	wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
