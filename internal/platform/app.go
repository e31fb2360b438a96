package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
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
	Redis  *redis.Client
	Store  *eventstore.Store
	Cache  *entitycache.Cache
	HTTP   *http.Client
	Router chi.Router

	ready      []func(context.Context) error
	background []func(context.Context) error
}

// NewApp builds an app on a Redis client.
func NewApp(name string, cfg Config, rdb *redis.Client, log *slog.Logger) *App {
	store := eventstore.New(rdb, cfg.KeyPrefix)
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

// Main runs a service binary. cfg is the service's config struct, which
// embeds base; wire adds the service's routes and work to the app. With
// -healthcheck it only asks the running service's /healthz, so that images
// need no shell; with -rebuild it rebuilds the entity cache and exits.
func Main(name string, cfg any, base *Config, wire func(*App) error) {
	check := flag.Bool("healthcheck", false, "ask the running service's /healthz and exit 0 if alive")
	rebuild := flag.Bool("rebuild", false, "drop the entity cache, build it again from the streams, and exit")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", name)
	slog.SetDefault(log)
	if err := Load(cfg); err != nil {
		log.Error("startup", "err", err)
		os.Exit(1)
	}
	if *check {
		os.Exit(healthcheck(base.Addr))
	}
	err := run(name, *base, log, func(app *App) error {
		if *rebuild {
			return Rebuild(context.Background(), app)
		}
		if err := wire(app); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		return app.Serve(ctx)
	})
	if err != nil {
		log.Error("stopped", "err", err)
		os.Exit(1)
	}
}

// run connects to Redis and hands the app to do.
func run(name string, cfg Config, log *slog.Logger, do func(*App) error) error {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	if cfg.RedisPassword != "" {
		opt.Password = cfg.RedisPassword
	}
	redis.SetLogger(redisLog{log})
	log.Info("starting", "addr", cfg.Addr, "redis", opt.Addr, "redis_password", Mask(opt.Password),
		"request_timeout", cfg.RequestTimeout, "max_body_bytes", cfg.MaxBodyBytes, "key_prefix", cfg.KeyPrefix)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	return do(NewApp(name, cfg, rdb, log))
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

func healthcheck(addr string) int {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

// redisLog puts the Redis client's own messages (dial failures while Redis
// is away) into the service's structured log.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

// Rebuild builds the entity cache of every kind, and the versions that
// commands expect, again from the streams, which are the source of truth.
// Commands must not run meanwhile.
func Rebuild(ctx context.Context, app *App) error {
	for _, kinds := range Streams {
		stream := kinds[0].StreamName()
		if err := app.Store.RebuildVersions(ctx, stream); err != nil {
			return fmt.Errorf("rebuild the versions of %s: %w", stream, err)
		}
		if err := app.Cache.Rebuild(ctx, kinds...); err != nil {
			return fmt.Errorf("rebuild the cache of %s: %w", stream, err)
		}
		app.Log.Info("cache rebuilt", "stream", app.Store.StreamKey(kinds[0].StreamName()))
	}
	return nil
}
