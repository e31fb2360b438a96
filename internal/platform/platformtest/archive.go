package platformtest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/archive"
)

// ArchiveURL is the URL of a new archive of the test's own, its table
// made: a database on the test PostgreSQL (pgtest), for Config.ArchiveURL,
// which StartOn connects as Run does. The package's TestMain must stop that
// server (pgtest.Stop).
func ArchiveURL(t testing.TB) string {
	t.Helper()
	url := pgtest.URL(t)
	db, err := pgxpool.New(context.Background(), url)
	if err == nil {
		err = archive.Migrate(context.Background(), db)
		db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// Archive gives an app made without StartOn an archive of the test's own
// (ArchiveURL).
func Archive(t testing.TB, app *platform.App) {
	t.Helper()
	useArchive(t, app, ArchiveURL(t))
}

// useArchive connects the archive at url and gives it to the app, until
// the test ends.
func useArchive(t testing.TB, app *platform.App, url string) {
	t.Helper()
	db, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	app.UseArchive(db)
}

// ArchiveAndTrim archives every event of each partition of a stream into
// the app's archive, as the archive service does, and then trims them out
// of Redis as far as the trim rule lets it (archive.Trim, no hot window).
// It returns how many entries it trimmed.
func ArchiveAndTrim(t testing.TB, app *platform.App, stream string) int64 {
	t.Helper()
	ctx, parts := context.Background(), app.Store.Partitions(stream)
	a := &archive.Archiver{DB: app.Archive, Store: app.Store, Streams: parts, Name: "test", Block: 50 * time.Millisecond}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	rdb := app.Store.Redis()
	redistest.Eventually(t, 30*time.Second, "every event of "+stream+" archived", func() bool {
		return !slices.ContainsFunc(parts, func(part string) bool {
			key := app.Store.StreamKey(part)
			last, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
			if err != nil || len(last) == 0 {
				return err != nil
			}
			mark, err := archive.Watermark(ctx, app.Archive, part)
			if err != nil || mark != last[0].ID {
				return true
			}
			p, err := rdb.XPending(ctx, key, archive.Group).Result()
			return err != nil || p.Count > 0
		})
	})
	var trimmed int64
	for _, part := range parts {
		n, err := archive.Trim(ctx, app.Archive, app.Store, part, 0)
		if err != nil {
			t.Fatal(err)
		}
		trimmed += n
	}
	return trimmed
}
