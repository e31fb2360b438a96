package platform_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

type note struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Text  string `json:"text"`
}

var notes = entitycache.Kind[note]{Name: "note", Created: "note_created", Updated: "note_updated", Deleted: "note_deleted",
	Index: "owner"}

// A rebuild of streams trimmed below what was archived reads the archive
// and then the streams: the cache it builds equals, key for key, the one
// the commits made, and -verify finds each event once, each entity's
// versions in order and the cache as the history gives it.
func TestARebuildOfTrimmedStreamsGivesTheSameCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	cfg := platformtest.Config(t)
	cfg.KeyPrefix = prefix
	app := platform.NewApp("test", cfg, rdb, slog.Default())
	platformtest.Archive(t, app)
	var kept []string
	for i := range 120 {
		n := note{ID: notes.NewID(ctx, app.Cache, "", i), Owner: fmt.Sprint("o", i%7), Text: "first"}
		if _, err := app.Cache.Commit(ctx, notes.Change(notes.Created, n, eventstore.NoEntity)); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case i%5 == 0:
			err = notes.Delete(ctx, app.Cache, n.ID)
		default:
			kept = append(kept, n.ID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Each kept note changed once or twice more: what a trim leaves of a
	// stream is no note's first version.
	for i, id := range kept {
		for range 1 + i%2 {
			err := notes.Update(ctx, app.Cache, id, notes.Updated, func(cur note) (note, error) { cur.Text += "+"; return cur, nil })
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	cache := func() map[string]string { return cacheOf(t, app.Store, prefix) }
	want := cache()
	if n := platformtest.ArchiveAndTrim(t, app, "note"); n < 250 {
		t.Fatalf("%d entries trimmed, want all but the last of each partition", n)
	}
	for k := range want {
		if err := rdb.Del(ctx, k).Err(); err != nil {
			t.Fatal(err)
		}
	}
	domain := platform.Domain{Streams: [][]entitycache.Projection{{notes}}}
	if err := platform.Rebuild(ctx, app, domain.Streams); err != nil {
		t.Fatal(err)
	}
	got := cache()
	if !maps.Equal(got, want) {
		differ := 0
		for k := range maps.Keys(want) {
			if got[k] != want[k] {
				differ++
			}
		}
		t.Fatalf("the rebuilt cache has %d keys, %d of the %d before the trim differ", len(got), differ, len(want))
	}
	var out bytes.Buffer
	if err := platform.Verify(ctx, app.Cache, domain, &out); err != nil {
		t.Fatalf("verify after the trim: %v\n%s", err, out.String())
	}
	// Without the archive the history begins where the streams do now.
	out.Reset()
	redisOnly := platform.NewApp("test", cfg, rdb, slog.Default())
	if err := platform.Verify(ctx, redisOnly.Cache, domain, &out); err == nil || !strings.Contains(out.String(), ", after 0") {
		t.Fatalf("verify of the trimmed streams alone found no entity whose versions do not start at 1 (%v):\n%s", err, out.String())
	}
}

// cacheOf is every key under prefix but the streams and the appends'
// replies, each with what it holds, in an order that does not depend on
// how Redis encodes it.
func cacheOf(t *testing.T, store *eventstore.Store, prefix string) map[string]string {
	t.Helper()
	ctx, rdb := context.Background(), store.Redis()
	keys, err := store.Scan(ctx, prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		if strings.HasPrefix(k, prefix+"events:") || strings.Contains(k, ":appended:") {
			continue
		}
		var v any
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result() // fmt prints a map in key order
		case "set":
			var ms []string
			ms, err = rdb.SMembers(ctx, k).Result()
			slices.Sort(ms)
			v = ms
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		default:
			v, err = rdb.Dump(ctx, k).Result()
		}
		if err != nil {
			t.Fatal(err)
		}
		out[k] = fmt.Sprint(v)
	}
	return out
}
