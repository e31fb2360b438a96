package entitycache_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

func BenchmarkCommit(b *testing.B) {
	c := newCache(b)
	ctx := context.Background()
	for b.Loop() {
		ch := create(orders, uuid.NewString(), entitycache.Entity{"customer_id": "c1", "product_ids": []any{"p1", "p2", "p3"}})
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
		if _, err := c.Commit(ctx, create(orders, uuid.NewString(), entitycache.Entity{"customer_id": "c1", "product_ids": []any{"p1", "p2"}})); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if all, err := c.List(ctx, orders); err != nil || len(all) != 1000 {
			b.Fatal(len(all), err)
		}
	}
}
