package entitycache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

type (
	order struct {
		CustomerID string   `json:"customer_id"`
		ID         string   `json:"id"`
		ProductIDs []string `json:"product_ids"`
	}
	item struct {
		Amount    int64  `json:"amount"`
		ID        string `json:"id"`
		ProductID string `json:"product_id"`
	}
	bill struct {
		Done    bool   `json:"done"`
		ID      string `json:"id"`
		OrderID string `json:"order_id"`
	}
	reservation struct {
		ID         string   `json:"id"`
		ProductIDs []string `json:"product_ids"`
	}
	customer struct {
		Email string `json:"email"`
		ID    string `json:"id"`
		Name  string `json:"name"`
	}
)

func kind[T any](name, stream string) entitycache.Kind[T] {
	return entitycache.Kind[T]{Name: name, Stream: stream, Created: name + "_created", Updated: name + "_updated", Deleted: name + "_deleted"}
}

var (
	orders    = kind[order]("order", "")
	bills     = kind[bill]("billing", "")
	customers = kind[customer]("customer", "")
	// reservations live in the inventory stream, beside the inventory, and
	// with partitions both are in its first, as they change together
	stock        = onePartition(kind[item]("inventory", ""))
	reservations = onePartition(kind[reservation]("reservation", "inventory"))
)

func onePartition[T any](k entitycache.Kind[T]) entitycache.Kind[T] {
	k.OnePartition = true
	return k
}

// key is a cache key of the partition of a stream that holds an entity.
func key(c *entitycache.Cache, stream, id, name string) string {
	return c.Store().Key(c.Store().PartitionOf(stream, id), name)
}

// stockKey is a key of the inventory stream's first partition, which holds
// stock and reservations.
func stockKey(c *entitycache.Cache, name string) string {
	return c.Store().Key(c.Store().FirstPartition("inventory"), name)
}

func newCache(t testing.TB) *entitycache.Cache {
	rdb, prefix := redistest.Client(t)
	return entitycache.New(eventstore.New(rdb, prefix, eventstore.WithPartitions(redistest.Partitions())))
}

func commit(t testing.TB, c *entitycache.Cache, chs ...entitycache.Change) []eventstore.Event {
	t.Helper()
	out, err := c.Commit(context.Background(), chs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func create[T any](k entitycache.Kind[T], ent T) entitycache.Change {
	return k.Change(k.Created, ent, eventstore.NoEntity)
}

func TestCommitThenReadShowsTypedEntity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(orders, order{ID: "o1", CustomerID: "c1", ProductIDs: []string{"p1", "p2", "p1"}}))
	commit(t, c, create(stock, item{ID: "i1", ProductID: "p1", Amount: 7}))
	commit(t, c, create(bills, bill{ID: "b1", OrderID: "o1", Done: false}))

	got, v, err := orders.Get(ctx, c, "o1")
	want := &order{ID: "o1", CustomerID: "c1", ProductIDs: []string{"p1", "p2", "p1"}}
	if err != nil || v != 1 || !reflect.DeepEqual(got, want) {
		t.Fatalf("order: %v v%d %v", got, v, err)
	}
	i1, _, _ := stock.Get(ctx, c, "i1")
	if s, _ := json.Marshal(i1); string(s) != `{"amount":7,"id":"i1","product_id":"p1"}` {
		t.Fatalf("inventory JSON %s", s)
	}
	b1, _, _ := bills.Get(ctx, c, "b1")
	if s, _ := json.Marshal(b1); string(s) != `{"done":false,"id":"b1","order_id":"o1"}` {
		t.Fatalf("billing JSON %s", s)
	}
	if e, v, _ := orders.Get(ctx, c, "nope"); e != nil || v != 0 {
		t.Fatalf("unknown id: %v v%d", e, v)
	}
}

func TestValuesThatLookLikeThePlaceholderAreKept(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	commit(t, c, create(customers, customer{ID: "c1", Name: "$version", Email: "{\"version\":true}"}))
	e, _, err := customers.Get(context.Background(), c, "c1")
	if err != nil || e.Name != "$version" || e.Email != `{"version":true}` {
		t.Fatalf("customer %v %v", e, err)
	}
}

func TestUpdateReplacesAndDeleteRemoves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(orders, order{ID: "o1", CustomerID: "c1", ProductIDs: []string{"p1", "p2"}}))
	commit(t, c, create(orders, order{ID: "o2", CustomerID: "c2", ProductIDs: []string{"p3"}}))
	commit(t, c, orders.Change(orders.Updated, order{ID: "o1", CustomerID: "c1", ProductIDs: []string{"p9"}}, 1))
	if e, v, _ := orders.Get(ctx, c, "o1"); v != 2 || !reflect.DeepEqual(e.ProductIDs, []string{"p9"}) {
		t.Fatalf("after update: %v v%d", e, v)
	}
	commit(t, c, orders.Change(orders.Deleted, order{ID: "o2"}, 1))
	if e, v, _ := orders.Get(ctx, c, "o2"); e != nil || v != 2 {
		t.Fatalf("after delete: %v v%d, want nil at version 2", e, v)
	}
	all, err := orders.List(ctx, c)
	if err != nil || len(all) != 1 || all[0].ID != "o1" {
		t.Fatalf("list after delete: %v %v", all, err)
	}
	if n, _ := c.Store().Redis().Exists(ctx, key(c, "order", "o2", "order_entity:o2:product_ids")).Result(); n != 0 {
		t.Fatal("list of a deleted entity left behind")
	}
}

func TestCommitIsAllOrNothingAcrossKindsOfOneStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(stock, item{ID: "i1", ProductID: "p1", Amount: 5}))
	_, err := c.Commit(ctx,
		create(reservations, reservation{ID: "o1", ProductIDs: []string{"p1"}}),
		stock.Change(stock.Updated, item{ID: "i1", ProductID: "p1", Amount: 4}, 0), // stale
	)
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want a conflict, got %v", err)
	}
	if e, _, _ := reservations.Get(ctx, c, "o1"); e != nil {
		t.Fatalf("reservation written by a failed commit: %v", e)
	}
	if info, _ := c.Store().Info(ctx, c.Store().FirstPartition("inventory")); info.Length != 1 {
		t.Fatalf("stream has %d events, want 1", info.Length)
	}
	if _, err := c.Commit(ctx, create(orders, order{ID: "o1"}), create(stock, item{ID: "i2"})); err == nil {
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
			part := c.Store().FirstPartition("customer") // a stream and its cache, with partitions or without
			xlen := p.XLen(ctx, c.Store().StreamKey(part))
			ids := p.SCard(ctx, c.Store().Key(part, "customer_ids"))
			if _, err := p.Exec(ctx); err == nil {
				looks++
				if xlen.Val() != ids.Val() {
					mismatches++
				}
			}
		}
	}()
	for i := range 500 {
		commit(t, c, create(customers, customer{ID: fmt.Sprint("c", i), Name: "n"}))
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
	created := commit(t, c, create(stock, item{ID: "i1", ProductID: "p1", Amount: 5}))
	updated := commit(t, c, stock.Change(stock.Updated, item{ID: "i1", ProductID: "p1", Amount: 3}, 1))
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
		commit(t, c, create(stock, item{ID: id, ProductID: fmt.Sprint("p", i), Amount: int64(i)}))
		commit(t, c, create(reservations, reservation{ID: fmt.Sprint("o", i), ProductIDs: []string{"p1", "p2"}}))
		if i%3 == 0 {
			commit(t, c, stock.Change(stock.Updated, item{ID: id, ProductID: fmt.Sprint("p", i), Amount: 100}, 1))
		}
		if i%5 == 0 {
			commit(t, c, reservations.Change(reservations.Deleted, reservation{ID: fmt.Sprint("o", i)}, 1))
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
	c.Store().Redis().HSet(ctx, stockKey(c, "inventory_entity:i1"), "amount", "-5")
	if err := c.Rebuild(ctx, stock, reservations); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("rebuild did not repair a damaged entity")
	}
	// The versions hash, which the cache shares with the store, comes back
	// with the cache.
	versions := c.Store().Redis().HGetAll(ctx, stockKey(c, "versions")).Val()
	for k := range before {
		c.Store().Redis().Del(ctx, k)
	}
	c.Store().Redis().Del(ctx, stockKey(c, "versions"))
	if err := c.Rebuild(ctx, stock, reservations); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatalf("cache rebuilt without versions differs:\nbefore %v\nafter  %v", before, after)
	}
	if again := c.Store().Redis().HGetAll(ctx, stockKey(c, "versions")).Val(); !reflect.DeepEqual(versions, again) {
		t.Fatalf("versions rebuilt: %v, want %v", again, versions)
	}
}

// A Redis written when the cache kept versions of its own, one hash per kind
// beside the store's ({inventory}:inventory_versions), works on: the store's
// versions, which commands expect, were always written too. The old hashes
// are keys no stream gives, which -verify reports and -rebuild removes.
func TestRebuildRemovesTheVersionsOfTheOldLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	rdb := c.Store().Redis()
	for i := range 3 {
		commit(t, c, create(stock, item{ID: fmt.Sprint("i", i), ProductID: "p"}))
		commit(t, c, create(reservations, reservation{ID: fmt.Sprint("o", i), ProductIDs: []string{"p"}}))
	}
	// The old layout: the same versions, per kind.
	for name, ids := range map[string][]string{"inventory": {"i0", "i1", "i2"}, "reservation": {"o0", "o1", "o2"}} {
		for _, id := range ids {
			rdb.HSet(ctx, stockKey(c, name+"_versions"), id, "1")
		}
	}
	if diffs, _ := c.Diff(ctx, stock, reservations); len(diffs) != 2 {
		t.Fatalf("the old layout's versions: %d differences, want 2:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
	if err := c.Rebuild(ctx, stock, reservations); err != nil {
		t.Fatal(err)
	}
	if diffs, err := c.Diff(ctx, stock, reservations); err != nil || len(diffs) != 0 {
		t.Fatalf("after the rebuild: %v, %v", diffs, err)
	}
	for _, name := range []string{"inventory_versions", "reservation_versions"} {
		if rdb.Exists(ctx, stockKey(c, name)).Val() != 0 {
			t.Errorf("%s is still there", name)
		}
	}
	commit(t, c, stock.Change(stock.Updated, item{ID: "i1", ProductID: "p", Amount: 3}, 1))
	if got, v, err := stock.Get(ctx, c, "i1"); err != nil || got.Amount != 3 || v != 2 {
		t.Fatalf("i1 after the rebuild: %+v at version %d (%v)", got, v, err)
	}
}

// dump reads every cache key (not the streams or the store's versions) with
// its content.
func dump(t testing.TB, c *entitycache.Cache) map[string]any {
	t.Helper()
	ctx := context.Background()
	rdb := c.Store().Redis()
	out := map[string]any{}
	for _, typ := range []string{"inventory", "order", "billing", "email"} {
		var keys []string
		for _, stream := range c.Store().Partitions(typ) {
			found, err := c.Store().Scan(ctx, c.Store().Key(stream, "*_*"))
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, found...)
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
			case "zset":
				out[k] = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
			}
		}
	}
	return out
}

func TestRetryOutlastsConflicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(stock, item{ID: "i1", ProductID: "p1", Amount: 0}))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := entitycache.Retry(ctx, func() error {
				e, v, err := stock.Get(ctx, c, "i1")
				if err != nil {
					return err
				}
				e.Amount++
				_, err = c.Commit(ctx, stock.Change(stock.Updated, *e, v))
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if e, _, _ := stock.Get(ctx, c, "i1"); e.Amount != 20 {
		t.Fatalf("20 increments gave %v", e.Amount)
	}
}

func TestListOfAnEmptyKindIsEmpty(t *testing.T) {
	t.Parallel()
	all, err := orders.List(context.Background(), newCache(t))
	if err != nil || all == nil || len(all) != 0 {
		t.Fatalf("empty list: %#v %v", all, err)
	}
}

// An entity is in the cache by its id, which its hash always holds: one whose
// other fields are all lists, even empty ones, is seen.
func TestEntityOfListsOnlyIsVisible(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	commit(t, c, create(reservations, reservation{ID: "o1", ProductIDs: []string{}}))
	got, v, err := reservations.Get(ctx, c, "o1")
	if err != nil || got == nil || v != 1 || got.ID != "o1" || len(got.ProductIDs) != 0 {
		t.Fatalf("reservation of no products: %+v v%d %v", got, v, err)
	}
	if all, _ := reservations.List(ctx, c); len(all) != 1 {
		t.Fatalf("listed %d reservations, want 1", len(all))
	}
}
