package entitycache_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/redis/go-redis/v9"
)

func BenchmarkCommit(b *testing.B) {
	c := newCache(b)
	ctx := context.Background()
	redisCPU := redisCPU(b, c)
	for b.Loop() {
		ch := create(orders, order{ID: uuid.NewString(), CustomerID: "c1", ProductIDs: []string{"p1", "p2", "p3"}})
		if _, err := c.Commit(ctx, ch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	redisCPU()
}

// BenchmarkCommitParallel commits new customers from many goroutines at
// once, as the customer service does under load.
func BenchmarkCommitParallel(b *testing.B) {
	c := newCache(b)
	ctx := context.Background()
	redisCPU := redisCPU(b, c)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ch := create(customers, customer{ID: uuid.NewString(), Name: "Load", Email: "load@example.com"})
			if _, err := c.Commit(ctx, ch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	redisCPU()
}

// redisCPU returns a func that reports the CPU time Redis spent per op
// ("redis-cpu-µs/op", from INFO cpu), its scripts and its network alike: a
// figure the load on a shared machine moves far less than the time of a
// round trip. On one Redis only: a cluster's are several.
func redisCPU(b *testing.B, c *entitycache.Cache) func() {
	rdb, ok := c.Store().Redis().(*redis.Client)
	if !ok {
		return func() {}
	}
	ctx := context.Background()
	used := func() float64 {
		info, err := rdb.Info(ctx, "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		var s float64
		for _, m := range regexp.MustCompile(`used_cpu_(?:user|sys):([0-9.]+)`).FindAllStringSubmatch(info, -1) {
			n, _ := strconv.ParseFloat(m[1], 64)
			s += n
		}
		return s
	}
	before := used()
	return func() { b.ReportMetric((used()-before)*1e6/float64(b.N), "redis-cpu-µs/op") }
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
