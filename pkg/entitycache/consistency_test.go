package entitycache_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/pkg/entitycache"
)

// Read-modify-commit through a read of many entities loses no update: the
// version a read returns is never newer than the data it returns with it, so
// a commit on stale data conflicts and retries. Two writers increment one
// counter, each reading it among 800 others.
func TestReadsOfManyEntitiesAreNotTorn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	ids := make([]string, 800)
	for i := range ids {
		ids[i] = fmt.Sprint("i", i)
	}
	var changes []entitycache.Change
	for _, id := range ids {
		changes = append(changes, create(stock, item{ID: id, ProductID: "p"}))
	}
	commit(t, c, changes...)
	const target = 400 // in the middle of the read
	var mu sync.Mutex
	committed := 0
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				err := entitycache.Retry(ctx, func() error {
					items, versions, err := stock.GetMany(ctx, c, ids...)
					if err != nil {
						return err
					}
					next := *items[target]
					next.Amount++
					_, err = c.Commit(ctx, stock.Change(stock.Updated, next, versions[target]))
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got, _, err := stock.Get(ctx, c, ids[target])
	if err != nil || got.Amount != int64(committed) {
		t.Fatalf("%d increments committed, the counter says %v (%v): %d lost", committed, got.Amount, err, int64(committed)-got.Amount)
	}
}
