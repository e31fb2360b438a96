// Package platformtest runs services in tests: each on a real Redis (see
// redistest) behind a real HTTP server on 127.0.0.1.
package platformtest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// Config is the config of a service under test: short timeouts, a small body
// limit and batch limit, and the test's own key prefix.
func Config(t testing.TB) platform.Config {
	return platform.Config{
		Addr: "127.0.0.1:0", KeyPrefix: redistest.Prefix(t), Partitions: redistest.Partitions(),
		RequestTimeout: 5 * time.Second, ShutdownTimeout: 5 * time.Second, MaxBodyBytes: 64 << 10, MaxBatch: MaxBatch,
	}
}

// MaxBatch is the batch limit of services under test: a batch one over it
// fits in their body limit.
const MaxBatch = 100

// Server is a service under test: its API, and its admin listener beside.
type Server struct {
	*httptest.Server // the API
	Admin            *httptest.Server
}

// Start wires a service on the shared test Redis with the platform's config
// base and its own cfg, as platform.Run does, serves it and runs its
// background work until the test ends. It returns once the service is ready.
func Start[C any](t testing.TB, name string, base platform.Config, cfg C, wire func(*platform.App, C) error) (*platform.App, *Server) {
	t.Helper()
	app, srv, _ := Stoppable(t, name, base, cfg, wire)
	return app, srv
}

// Stoppable is Start with a stop that the test may call before it ends, e.g.
// to start the service again on the same keys.
func Stoppable[C any](t testing.TB, name string, base platform.Config, cfg C, wire func(*platform.App, C) error) (*platform.App, *Server, func()) {
	t.Helper()
	rdb, _ := redistest.Client(t)
	return StartOn(t, name, base, rdb, cfg, wire)
}

// StartOn is Stoppable on a Redis of the test's own, e.g. a
// redistest.Server it stalls or stops. With base.ArchiveURL (see
// ArchiveURL) the app reads through that archive.
func StartOn[C any](t testing.TB, name string, base platform.Config, rdb redis.UniversalClient, cfg C, wire func(*platform.App, C) error) (*platform.App, *Server, func()) {
	t.Helper()
	app := platform.NewApp(name, base, rdb, slog.Default().With("service", name))
	if base.ArchiveURL != "" {
		useArchive(t, app, base.ArchiveURL)
	}
	if err := wire(app, cfg); err != nil {
		t.Fatal(err)
	}
	srv := &Server{Server: httptest.NewServer(app.Router), Admin: httptest.NewServer(app.Admin)}
	ctx, cancel := context.WithCancel(context.Background())
	wait := app.Start(ctx)
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wait(); srv.Close(); srv.Admin.Close() }) }
	t.Cleanup(stop)
	redistest.Eventually(t, 10*time.Second, name+" ready", func() bool {
		status, _ := Do(t, "GET", srv.Admin.URL+"/readyz", nil)
		return status == http.StatusOK
	})
	return app, srv, stop
}

// Created writes an entity's created event, with a new id unless it has
// one, as its owning service does, for tests of services that read or
// consume it.
func Created[T any](t testing.TB, cache *entitycache.Cache, kind entitycache.Kind[T], ent T) eventstore.Event {
	t.Helper()
	if kind.ID(ent) == "" {
		ent = kind.WithID(ent, uuid.NewString())
	}
	events, err := cache.Commit(context.Background(), kind.Change(kind.Created, ent, eventstore.NoEntity))
	if err != nil {
		t.Fatal(err)
	}
	return events[0]
}

// BadRequest is a request a service must refuse with its status.
type BadRequest struct {
	Name, Method, Path string
	Body               any
	Status             int
}

// RejectAll sends each bad request to the service at url, wants its JSON
// error, and then that none of them appended to the stream.
func RejectAll(t *testing.T, app *platform.App, url, stream string, cases []BadRequest) {
	t.Helper()
	before, err := app.Store.Info(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) { Rejected(t, c.Method, url+c.Path, c.Body, c.Status) })
	}
	if after, _ := app.Store.Info(t.Context(), stream); after.Length != before.Length {
		t.Fatalf("bad input wrote %d events", after.Length-before.Length)
	}
}

// Bad is a BadRequest.
func Bad(name, method, path string, body any, status int) BadRequest {
	return BadRequest{Name: name, Method: method, Path: path, Body: body, Status: status}
}
