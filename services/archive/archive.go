package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/archive"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/prometheus/client_golang/prometheus"
)

type config struct {
	// Hot is how long an event stays in Redis at least, archived or not.
	Hot time.Duration `envconfig:"HOT_RETENTION" default:"10m"`
	// TrimEvery is how often each partition is trimmed.
	TrimEvery time.Duration `envconfig:"TRIM_EVERY" default:"30s"`
	// Batch is how many entries one read takes and one insert writes.
	Batch int64 `envconfig:"ARCHIVE_BATCH" default:"500"`
}

var errArchiveUnreachable = &platform.Error{Status: http.StatusServiceUnavailable, Msg: "archive unreachable"}

func wire(app *platform.App, cfg config) error {
	if app.Archive == nil {
		app.Log.Info("archiving off: no ARCHIVE_URL, the streams keep all their history")
		return nil
	}
	if cfg.Hot < 0 || cfg.TrimEvery <= 0 || cfg.Batch <= 0 {
		return fmt.Errorf("HOT_RETENTION must be 0 or more, TRIM_EVERY and ARCHIVE_BATCH above 0, not %v, %v and %d",
			cfg.Hot, cfg.TrimEvery, cfg.Batch)
	}
	streams := shop.Domain.Partitions(app.Store)
	// Each stream's read blocks on a connection of its own, from a pool of
	// their own: the trim's and the metrics' commands do not wait for them.
	rdb := platform.OwnPool(app.Redis, len(streams)+1)
	store := eventstore.New(rdb, app.Config.KeyPrefix, eventstore.WithPartitions(app.Config.Partitions),
		eventstore.WithReplicas(app.Config.MinReplicas, app.Config.ReplicaTimeout))
	a := &archive.Archiver{DB: app.Archive, Store: store, Streams: streams, Batch: cfg.Batch, Logger: app.Log}
	trimmed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ordershop_archive_trimmed_total",
		Help: "Entries trimmed from a stream, all archived and done with by every reader, and older than the hot window.",
	}, []string{"stream"})
	app.Metrics.Register(trimmed,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ordershop_archive_rows_total",
			Help: "Events this service inserted into the archive (rows there already not counted).",
		}, func() float64 { return float64(a.Rows()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ordershop_archive_bytes_total",
			Help: "Bytes of the entities of the events this service inserted into the archive.",
		}, func() float64 { return float64(a.Bytes()) }))
	// The lag of group archive on each stream: the events not yet archived.
	app.Metrics.Streams(archive.Group, func(ctx context.Context) ([]eventstore.StreamInfo, error) {
		return shop.Domain.Infos(ctx, app.Store)
	})
	app.Go(func(ctx context.Context) error {
		defer rdb.Close()
		return run(ctx, app, a)
	})
	app.Go(func(ctx context.Context) error { return trim(ctx, app, streams, cfg, trimmed) })
	app.OnReady(func(ctx context.Context) error {
		if err := app.Archive.Ping(ctx); err != nil {
			return fmt.Errorf("%w: %w", errArchiveUnreachable, err)
		}
		return nil
	})
	return nil
}

// run runs the archiver until ctx ends. It stops only when it cannot make
// its table (PostgreSQL away at the start): then it starts again, after a
// capped backoff.
func run(ctx context.Context, app *platform.App, a *archive.Archiver) error {
	wait := time.Second
	for {
		err := a.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		app.Log.Warn("archiver stopped", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// trim trims every partition every TRIM_EVERY until ctx ends, and counts
// what it trimmed. A partition that fails is logged and tried again the
// next time.
func trim(ctx context.Context, app *platform.App, streams []string, cfg config, trimmed *prometheus.CounterVec) error {
	return platform.Every(ctx, cfg.TrimEvery, func(ctx context.Context) {
		for _, s := range streams {
			n, err := archive.Trim(ctx, app.Archive, app.Store, s, cfg.Hot)
			if err != nil && ctx.Err() == nil {
				app.Log.Warn("trim", "stream", s, "err", err)
			}
			trimmed.WithLabelValues(app.Store.StreamKey(s)).Add(float64(n))
		}
	})
}
