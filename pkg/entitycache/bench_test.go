package entitycache_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

func BenchmarkCommit(b *testing.B) {
	c := newCache(b)
	ctx := context.Background()
	for b.Loop() {
		ch := create(orders, order{ID: uuid.NewString(), CustomerID: "c1", ProductIDs: []string{"p1", "p2", "p3"}})
		if _, err := c.Commit(ctx, ch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkList1000(b *testing.B) {
	c := newCache(b)
	ctx := context.Background()
	for range 1000 {
		if _, err := c.Commit(ctx, create(orders, order{ID: uuid.NewString(), CustomerID: "c1", ProductIDs: []string{"p1", "p2"}})); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if all, err := orders.List(ctx, c); err != nil || len(all) != 1000 {
			b.Fatal(len(all), err)
		}
	}
}

// BenchmarkCommitParallel commits from 16 goroutines at once, as a busy
// service's requests do: what partitions over a cluster's nodes can spread.
func BenchmarkCommitParallel(b *testing.B) {
	c := newCache(b)
	ctx := context.Background()
	b.SetParallelism(8) // × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ch := create(orders, order{ID: uuid.NewString(), CustomerID: "c1", ProductIDs: []string{"p1", "p2", "p3"}})
			if _, err := c.Commit(ctx, ch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
