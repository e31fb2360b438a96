package eventstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func eventsPerSecond(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkAppend(b *testing.B) {
	s := newStore(b)
	e := event(b, "customer_created", "c1", 0)
	ctx := context.Background()
	for b.Loop() {
		e.ID = uuid.NewString() // the same ID again would be a retry
		if _, err := s.Append(ctx, "customer", eventstore.Record{Event: e, Expected: eventstore.AnyVersion}); err != nil {
			b.Fatal(err)
		}
	}
	eventsPerSecond(b, b.N)
}

func BenchmarkAppendBatch100(b *testing.B) {
	s := newStore(b)
	recs := make([]eventstore.Record, 100)
	for i := range recs {
		recs[i] = eventstore.Record{Event: event(b, "customer_created", "c1", i), Expected: eventstore.AnyVersion}
	}
	ctx := context.Background()
	for b.Loop() {
		recs[0].Event.ID = uuid.NewString()
		if _, err := s.Append(ctx, "customer", recs...); err != nil {
			b.Fatal(err)
		}
	}
	eventsPerSecond(b, b.N*len(recs))
}

func BenchmarkConsume(b *testing.B) {
	s := newStore(b)
	for n := b.N; n > 0; n -= 1000 {
		appendN(b, s, "customer", min(n, 1000))
	}
	b.ResetTimer()
	stop := consume(b, s, eventstore.ConsumerConfig{Group: "bench", Batch: 100}, b.N, func() {})
	b.StopTimer()
	stop()
	eventsPerSecond(b, b.N)
}

// BenchmarkConsumeWorkers drains 5,000 events of 1,000 entities, in batches
// of 50, with a handler that waits 200µs as for a call to another service:
// how busy the workers stay across batches.
func BenchmarkConsumeWorkers(b *testing.B) {
	const n = 5000
	s := newStore(b)
	for range n / 1000 {
		appendN(b, s, "customer", 1000)
	}
	group := 0 // each run a group of its own, from the stream's start; -count runs the sub-benchmarks again on this store
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprint("workers=", workers), func(b *testing.B) {
			for b.Loop() {
				group++
				cfg := eventstore.ConsumerConfig{Group: fmt.Sprint("bench-", group), Batch: 50, Workers: workers}
				consume(b, s, cfg, n, func() { time.Sleep(200 * time.Microsecond) })()
			}
			eventsPerSecond(b, b.N*n)
		})
	}
}

// consume runs a consumer of the customer stream until it has handled n
// events, each after work, and answers its stop.
func consume(b *testing.B, s *eventstore.Store, cfg eventstore.ConsumerConfig, n int, work func()) (stop func()) {
	var handled atomic.Int64
	done := make(chan struct{})
	cfg.Name, cfg.Streams, cfg.Block = "bench-1", []string{"customer"}, 10*time.Millisecond
	cfg.Handler = func(context.Context, eventstore.Event) error {
		work()
		if handled.Add(1) == int64(n) {
			close(done)
		}
		return nil
	}
	c, err := s.NewConsumer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { c.Run(ctx); close(stopped) }()
	<-done
	return func() {
		cancel()
		<-stopped
	}
}
