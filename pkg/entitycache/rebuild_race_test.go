package entitycache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// A rebuild is safe while commands run: versions only rise, so no version
// is handed out twice, and the cache ends equal to the projection of the
// stream, with no id left without its entity.
func TestRebuildWhileCommandsRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprint("i", i)
		commit(t, c, create(stock, item{ID: ids[i], ProductID: "p"}))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters()
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[rand.IntN(len(ids))]
				err := entitycache.Retry(ctx, func() error {
					cur, v, err := stock.Get(ctx, c, id)
					if err != nil {
						return err
					}
					switch {
					case cur == nil:
						_, err = c.Commit(ctx, stock.Change(stock.Created, item{ID: id, ProductID: "p"}, v))
					case w == 0 && n%7 == 0:
						_, err = c.Commit(ctx, stock.Change(stock.Deleted, *cur, v))
					default:
						next := *cur
						next.Amount++
						_, err = c.Commit(ctx, stock.Change(stock.Updated, next, v))
					}
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if err := c.Store().RebuildVersions(ctx, c.Store().FirstPartition("inventory")); err != nil {
			t.Fatal(err)
		}
		if err := c.Rebuild(ctx, stock); err != nil {
			t.Fatal(err)
		}
	}
	stopWriters()

	latest := map[string]eventstore.Event{}
	seen := map[string]bool{}
	err := c.Store().Replay(ctx, c.Store().FirstPartition("inventory"), "0", func(events []eventstore.Event) error {
		for _, e := range events {
			key := fmt.Sprint(e.EntityID, "@", e.Version)
			if seen[key] {
				return fmt.Errorf("version %d of %s appended twice", e.Version, e.EntityID)
			}
			seen[key] = true
			latest[e.EntityID] = e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	live, err := stock.List(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	members, _ := c.Store().Redis().SMembers(ctx, stockKey(c, "inventory_ids")).Result()
	if len(members) != len(live) {
		t.Fatalf("%d ids in the set, %d of them with their entity", len(members), len(live))
	}
	want := []item{}
	for _, id := range ids {
		e := latest[id]
		if v, _ := c.Store().Version(ctx, c.Store().FirstPartition("inventory"), id); v != e.Version {
			t.Errorf("%s: the store's version is %d, the stream's %d", id, v, e.Version)
		}
		if e.Type == stock.Deleted {
			continue
		}
		var it item
		if err := e.Decode(&it); err != nil {
			t.Fatal(err)
		}
		want = append(want, it)
	}
	got := map[string]item{}
	for _, it := range live {
		got[it.ID] = it
	}
	wantByID := map[string]item{}
	for _, it := range want {
		wantByID[it.ID] = it
	}
	if !reflect.DeepEqual(got, wantByID) {
		t.Fatalf("cache differs from the projection of the stream:\ncache %v\nwant  %v", got, wantByID)
	}
}
