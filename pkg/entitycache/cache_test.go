package entitycache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

var (
	orders = entitycache.Kind{Name: "order", Lists: []string{"product_ids"}}
	stock  = entitycache.Kind{Name: "inventory", Numbers: []string{"amount"}}
	bills  = entitycache.Kind{Name: "billing", Bools: []string{"done"}}
	// reservations live in the inventory stream, beside the inventory
	reservations = entitycache.Kind{Name: "reservation", Stream: "inventory", Lists: []string{"product_ids"}}
)

func newCache(t testing.TB) *entitycache.Cache {
	rdb, prefix := redistest.Client(t)
	return entitycache.New(eventstore.New(rdb, prefix))
}

func commit(t testing.TB, c *entitycache.Cache, chs ...entitycache.Change) []eventstore.Event {
	t.Helper()
	out, err := c.Commit(context.Background(), chs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func create(k entitycache.Kind, id string, e entitycache.Entity) entitycache.Change {
	e["id"] = id
	return entitycache.Change{Kind: k, Type: k.Name + "_created", ID: id, Entity: e, Expected: eventstore.NoEntity}
}

func TestCommitThenReadShowsTypedEntity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(orders, "o1", entitycache.Entity{"customer_id": "c1", "product_ids": []any{"p1", "p2", "p1"}}))
	commit(t, c, create(stock, "i1", entitycache.Entity{"product_id": "p1", "amount": 7}))
	commit(t, c, create(bills, "b1", entitycache.Entity{"order_id": "o1", "done": false}))

	got, v, err := c.Get(ctx, orders, "o1")
	want := entitycache.Entity{"id": "o1", "customer_id": "c1", "product_ids": []any{"p1", "p2", "p1"}}
	if err != nil || v != 1 || !reflect.DeepEqual(got, want) {
		t.Fatalf("order: %v v%d %v", got, v, err)
	}
	js := func(k entitycache.Kind, id string) string {
		e, _, _ := c.Get(ctx, k, id)
		b, _ := json.Marshal(e)
		return string(b)
	}
	if s := js(stock, "i1"); s != `{"amount":7,"id":"i1","product_id":"p1"}` {
		t.Fatalf("inventory JSON %s", s)
	}
	if s := js(bills, "b1"); s != `{"done":false,"id":"b1","order_id":"o1"}` {
		t.Fatalf("billing JSON %s", s)
	}
	if e, v, _ := c.Get(ctx, orders, "nope"); e != nil || v != 0 {
		t.Fatalf("unknown id: %v v%d", e, v)
	}
}

func TestValuesThatLookLikeThePlaceholderAreKept(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	customers := entitycache.Kind{Name: "customer"}
	commit(t, c, create(customers, "c1", entitycache.Entity{"name": "$version", "email": "{\"version\":true}"}))
	e, _, err := c.Get(context.Background(), customers, "c1")
	if err != nil || e["name"] != "$version" || e["email"] != `{"version":true}` {
		t.Fatalf("customer %v %v", e, err)
	}
}

func TestUpdateReplacesAndDeleteRemoves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(orders, "o1", entitycache.Entity{"customer_id": "c1", "product_ids": []any{"p1", "p2"}}))
	commit(t, c, create(orders, "o2", entitycache.Entity{"customer_id": "c2", "product_ids": []any{"p3"}}))
	commit(t, c, entitycache.Change{Kind: orders, Type: "order_updated", ID: "o1", Expected: 1,
		Entity: entitycache.Entity{"id": "o1", "customer_id": "c1", "product_ids": []any{"p9"}}})
	if e, v, _ := c.Get(ctx, orders, "o1"); v != 2 || !reflect.DeepEqual(e["product_ids"], []any{"p9"}) {
		t.Fatalf("after update: %v v%d", e, v)
	}
	commit(t, c, entitycache.Change{Kind: orders, Type: "order_deleted", ID: "o2", Expected: 1, Entity: entitycache.Entity{"id": "o2"}})
	if e, v, _ := c.Get(ctx, orders, "o2"); e != nil || v != 2 {
		t.Fatalf("after delete: %v v%d, want nil at version 2", e, v)
	}
	all, err := c.List(ctx, orders)
	if err != nil || len(all) != 1 || all[0]["id"] != "o1" {
		t.Fatalf("list after delete: %v %v", all, err)
	}
	if n, _ := c.Store().Redis().Exists(ctx, c.Store().Key("order", "order_entity:o2:product_ids")).Result(); n != 0 {
		t.Fatal("list of a deleted entity left behind")
	}
}

func TestCommitIsAllOrNothingAcrossKindsOfOneStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(stock, "i1", entitycache.Entity{"product_id": "p1", "amount": 5}))
	_, err := c.Commit(ctx,
		create(reservations, "o1", entitycache.Entity{"product_ids": []any{"p1"}}),
		entitycache.Change{Kind: stock, Type: "inventory_updated", ID: "i1", Expected: 0, // stale
			Entity: entitycache.Entity{"id": "i1", "product_id": "p1", "amount": 4}},
	)
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want a conflict, got %v", err)
	}
	if e, _, _ := c.Get(ctx, reservations, "o1"); e != nil {
		t.Fatalf("reservation written by a failed commit: %v", e)
	}
	if info, _ := c.Store().Info(ctx, "inventory"); info.Length != 1 {
		t.Fatalf("stream has %d events, want 1", info.Length)
	}
	if _, err := c.Commit(ctx, create(orders, "o1", entitycache.Entity{}), create(stock, "i2", entitycache.Entity{})); err == nil {
		t.Fatal("a commit across two streams was accepted")
	}
}

// The stream and the cache move together: an observer that reads both in one
// MULTI never sees an event without its cache update.
func TestAppendAndCacheAreOneStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	rdb := c.Store().Redis()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	mismatches, looks := 0, 0
	go func() {
		defer wg.Done()
		for !stop.Load() {
			p := rdb.TxPipeline()
			xlen := p.XLen(ctx, c.Store().StreamKey("customer"))
			ids := p.SCard(ctx, c.Store().Key("customer", "customer_ids"))
			if _, err := p.Exec(ctx); err == nil {
				looks++
				if xlen.Val() != ids.Val() {
					mismatches++
				}
			}
		}
	}()
	kind := entitycache.Kind{Name: "customer"}
	for i := range 500 {
		commit(t, c, create(kind, fmt.Sprint("c", i), entitycache.Entity{"name": "n"}))
	}
	stop.Store(true)
	wg.Wait()
	if mismatches > 0 {
		t.Fatalf("%d of %d looks saw the stream and the cache apart", mismatches, looks)
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	created := commit(t, c, create(stock, "i1", entitycache.Entity{"product_id": "p1", "amount": 5}))
	updated := commit(t, c, entitycache.Change{Kind: stock, Type: "inventory_updated", ID: "i1", Expected: 1,
		Entity: entitycache.Entity{"id": "i1", "product_id": "p1", "amount": 3}})
	before := dump(t, c)
	for _, events := range [][]eventstore.Event{updated, created, append(created, updated...)} {
		if err := c.Apply(ctx, events, stock); err != nil {
			t.Fatal(err)
		}
		if after := dump(t, c); !reflect.DeepEqual(before, after) {
			t.Fatalf("applying old events changed the cache:\n%v\n%v", before, after)
		}
	}
}

func TestRebuildGivesTheSameCacheKeyForKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	for i := range 30 {
		id := fmt.Sprint("i", i)
		commit(t, c, create(stock, id, entitycache.Entity{"product_id": fmt.Sprint("p", i), "amount": i}))
		commit(t, c, create(reservations, fmt.Sprint("o", i), entitycache.Entity{"product_ids": []any{"p1", "p2"}}))
		if i%3 == 0 {
			commit(t, c, entitycache.Change{Kind: stock, Type: "inventory_updated", ID: id, Expected: 1,
				Entity: entitycache.Entity{"id": id, "product_id": fmt.Sprint("p", i), "amount": 100}})
		}
		if i%5 == 0 {
			commit(t, c, entitycache.Change{Kind: reservations, Type: "reservation_deleted", ID: fmt.Sprint("o", i), Expected: 1,
				Entity: entitycache.Entity{"id": fmt.Sprint("o", i)}})
		}
	}
	before := dump(t, c)
	if len(before) < 60 {
		t.Fatalf("only %d cache keys", len(before))
	}
	// Lose the cache entirely, then rebuild it from the stream.
	for k := range before {
		c.Store().Redis().Del(ctx, k)
	}
	if err := c.Rebuild(ctx, stock, reservations); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatalf("rebuilt cache differs:\nbefore %v\nafter  %v", before, after)
	}
	// A rebuild over a damaged cache repairs it too.
	c.Store().Redis().HSet(ctx, c.Store().Key("inventory", "inventory_entity:i1"), "amount", "-5")
	if err := c.Rebuild(ctx, stock, reservations); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("rebuild did not repair a damaged entity")
	}
}

// dump reads every cache key (not the streams or the store's versions) with
// its content.
func dump(t testing.TB, c *entitycache.Cache) map[string]any {
	t.Helper()
	ctx := context.Background()
	rdb := c.Store().Redis()
	out := map[string]any{}
	for _, stream := range []string{"inventory", "order", "billing"} {
		keys, err := rdb.Keys(ctx, c.Store().Key(stream, "*_*")).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			switch rdb.Type(ctx, k).Val() {
			case "set":
				m := rdb.SMembers(ctx, k).Val()
				sort.Strings(m)
				out[k] = m
			case "hash":
				out[k] = rdb.HGetAll(ctx, k).Val()
			case "list":
				out[k] = rdb.LRange(ctx, k, 0, -1).Val()
			}
		}
	}
	return out
}

func TestRetryOutlastsConflicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(stock, "i1", entitycache.Entity{"product_id": "p1", "amount": 0}))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := entitycache.Retry(ctx, func() error {
				e, v, err := c.Get(ctx, stock, "i1")
				if err != nil {
					return err
				}
				n, _ := e["amount"].(json.Number).Int64()
				e["amount"] = n + 1
				_, err = c.Commit(ctx, entitycache.Change{Kind: stock, Type: "inventory_updated", ID: "i1", Expected: v, Entity: e})
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if e, _, _ := c.Get(ctx, stock, "i1"); e["amount"] != json.Number("20") {
		t.Fatalf("20 increments gave %v", e["amount"])
	}
}

func TestListOfAnEmptyKindIsEmpty(t *testing.T) {
	t.Parallel()
	all, err := newCache(t).List(context.Background(), orders)
	if err != nil || all == nil || len(all) != 0 {
		t.Fatalf("empty list: %#v %v", all, err)
	}
}
