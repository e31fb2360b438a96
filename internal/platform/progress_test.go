package platform

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestTheProgressLineSaysWhatIsDoneTheRateAndTheTimeLeft(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	p := &progress{what: "rebuild", total: 1000, start: start}
	p.done.Store(250)
	if got, want := p.line(start.Add(5*time.Second)), "rebuild: 250 of 1000 events (25%), 50 events/s, 15s left"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	p.done.Store(1000)
	if got, want := p.line(start.Add(20*time.Second)), "rebuild: 1000 of 1000 events (100%), 50 events/s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// A rebuild counts every event it replays: twice each, for the versions and
// for the cache.
func TestARebuildShowsItsProgressToTheEnd(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	app := NewApp("test", Config{KeyPrefix: prefix, Partitions: redistest.Partitions()}, rdb, slog.Default())
	type thing struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	kind := entitycache.Kind[thing]{Name: "thing", Created: "thing_created", Updated: "thing_updated", Deleted: "thing_deleted"}
	for range 1200 {
		ent := thing{ID: kind.NewID(t.Context(), app.Cache, "", 0), Name: "x"}
		if _, err := app.Cache.Commit(t.Context(), kind.Change(kind.Created, ent, eventstore.NoEntity)); err != nil {
			t.Fatal(err)
		}
	}
	domain := Domain{Streams: [][]entitycache.Projection{{kind}}}
	var out bytes.Buffer
	total, err := eventCount(t.Context(), app.Store, []string{"thing"})
	if err != nil || total != 1200 {
		t.Fatalf("%d events counted (%v), want 1200", total, err)
	}
	ctx, stop := showProgress(t.Context(), &out, "rebuild", 2*total, time.Millisecond)
	if err := Rebuild(ctx, app, domain.Streams); err != nil {
		t.Fatal(err)
	}
	stop()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\r")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "rebuild: 2400 of 2400 events (100%)") {
		t.Fatalf("last line %q", last)
	}
}
