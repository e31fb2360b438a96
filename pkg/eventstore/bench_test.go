package eventstore_test

import (
	"context"
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
	var handled atomic.Int64
	done := make(chan struct{})
	c, err := s.NewConsumer(eventstore.ConsumerConfig{
		Group: "bench", Name: "bench-1", Streams: []string{"customer"}, Batch: 100, Block: 10 * time.Millisecond,
		Handler: func(context.Context, eventstore.Event) error {
			if handled.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ResetTimer()
	stopped := make(chan struct{})
	go func() { c.Run(ctx); close(stopped) }()
	<-done
	b.StopTimer()
	cancel()
	<-stopped
	eventsPerSecond(b, b.N)
}
