package entitycache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Diff finds every way a cache can differ from its stream, one line per key.
func TestDiffFindsEveryKeyTheCacheHasWrong(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	for i := range 5 {
		commit(t, c, create(stock, item{ID: fmt.Sprint("i", i), ProductID: fmt.Sprint("p", i), Amount: 10}))
		commit(t, c, create(reservations, reservation{ID: fmt.Sprint("o", i), ProductIDs: []string{"p1", "p1", "p2"}}))
	}
	commit(t, c, reservations.Change(reservations.Deleted, reservation{ID: "o4"}, 1))
	if diffs, err := c.Diff(ctx, stock, reservations); err != nil || len(diffs) != 0 {
		t.Fatalf("a cache as its stream gives it: %v, %v", diffs, err)
	}
	key := func(name string) string { return stockKey(c, name) }
	rdb := c.Store().Redis()
	rdb.HSet(ctx, key("inventory_entity:i1"), "amount", "-5")           // a damaged field
	rdb.SRem(ctx, key("inventory_ids"), "i2")                           // a lost id
	rdb.ZAdd(ctx, key("reservation_sorted_ids"), redis.Z{Member: "o4"}) // a deleted one back
	rdb.RPush(ctx, key("reservation_entity:o0:product_ids"), "p3")      // a piece too many
	rdb.HSet(ctx, key("reservation_entity:o9"), "id", "o9")             // an entity no event made
	rdb.HSet(ctx, key("inventory_versions"), "i3", "7")                 // a hash the cache no longer writes
	rdb.HSet(ctx, key("versions"), "i0", "3")                           // a version the stream never gave
	diffs, err := c.Diff(ctx, stock, reservations)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"inventory_entity:i1:", "inventory_ids:", "reservation_sorted_ids:", "reservation_entity:o0:product_ids:",
		"reservation_entity:o9:", "inventory_versions:", "{" + c.Store().FirstPartition("inventory") + "}:versions:"}
	if len(diffs) != len(want) {
		t.Fatalf("%d differences, want %d:\n%s", len(diffs), len(want), strings.Join(diffs, "\n"))
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(diffs, "\n"), w) {
			t.Errorf("no difference in %s among:\n%s", w, strings.Join(diffs, "\n"))
		}
	}
	if !strings.Contains(strings.Join(diffs, "\n"), "the cache has hash [amount=-5 id=i1 product_id=p1], the stream gives hash [amount=10 id=i1 product_id=p1]") {
		t.Errorf("the damaged field is not shown plainly:\n%s", strings.Join(diffs, "\n"))
	}
}
