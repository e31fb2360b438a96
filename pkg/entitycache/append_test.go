package entitycache_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"testing"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// A commit whose cache update would fail at run time, here on the set of ids
// that something replaced by a string, fails before anything is written: no
// event, no version, and the cached entity as it was.
func TestCommitOnADamagedCacheWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	c := entitycache.New(eventstore.New(rdb, prefix, eventstore.WithPartitions(redistest.Partitions())))
	commit(t, c, create(orders, order{ID: "o1", CustomerID: "c1", ProductIDs: []string{"p1"}}))
	if err := rdb.Set(ctx, key(c, "order", "o1", "order_ids"), "damaged", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := redistest.Snapshot(t, rdb, prefix)
	_, err := c.Commit(ctx, orders.Change(orders.Updated, order{ID: "o1", CustomerID: "c2", ProductIDs: []string{"p2"}}, 1))
	if err == nil {
		t.Fatal("the commit succeeded")
	}
	if after := redistest.Snapshot(t, rdb, prefix); !maps.Equal(before, after) {
		e, v, _ := orders.Get(ctx, c, "o1")
		t.Fatalf("the failed commit (%v) wrote: o1 is now %v at version %d", err, e, v)
	}
}

// A list field of many thousands of items commits whole and reads back whole.
func TestLongListsCommitWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	for _, n := range []int{8000, 20000} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprint("p", i)
		}
		id := fmt.Sprint("o", n)
		if _, err := c.Commit(ctx, create(orders, order{ID: id, CustomerID: "c1", ProductIDs: ids})); err != nil {
			t.Fatalf("%d items: %v", n, err)
		}
		got, v, err := orders.Get(ctx, c, id)
		if err != nil || v != 1 || got == nil || !reflect.DeepEqual(got.ProductIDs, ids) {
			t.Fatalf("%d items: read back %v at version %d (%v)", n, got != nil, v, err)
		}
	}
}
