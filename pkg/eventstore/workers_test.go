package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Workers: handlers at once, each entity's events in order on one of them.

// appendEntities appends rounds events to each of n entities, interleaved
// in the stream (e0 e1 … e0 e1 …): entity i's r-th event has version r+1.
func appendEntities(t testing.TB, s *eventstore.Store, stream string, n, rounds int) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for r := range rounds {
		recs := make([]eventstore.Record, n)
		for i := range recs {
			recs[i] = eventstore.Record{Event: event(t, "customer_updated", fmt.Sprintf("%s-e%d", stream, i), r), Expected: eventstore.AnyVersion}
		}
		events, err := s.Append(context.Background(), stream, recs...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, events...)
	}
	return out
}

// appendBoth appends events of customers and of orders (see appendEntities).
func appendBoth(t testing.TB, s *eventstore.Store, customers, orders, rounds int) []eventstore.Event {
	return append(appendEntities(t, s, "customer", customers, rounds), appendEntities(t, s, "order", orders, rounds)...)
}

// entities checks what a handler sees of each entity: its events in order
// (by version), never two of them at once, each once; and how many
// handlers ran at once at most.
type entities struct {
	mu       sync.Mutex
	last     map[string]int64 // entity -> version handled last
	inFlight map[string]bool
	errs     []string
	now, max atomic.Int64
	seen     *seen
}

func newEntities() *entities {
	return &entities{last: map[string]int64{}, inFlight: map[string]bool{}, seen: newSeen()}
}

func (en *entities) fail(format string, args ...any) {
	en.mu.Lock()
	defer en.mu.Unlock()
	en.errs = append(en.errs, fmt.Sprintf(format, args...))
}

// handle records e; work is the handler's own, run while e is in flight.
func (en *entities) handle(ctx context.Context, e eventstore.Event, work func() error) error {
	key := eventstore.StreamOf(ctx) + "/" + e.EntityID
	en.mu.Lock()
	if en.inFlight[key] {
		en.errs = append(en.errs, fmt.Sprintf("two events of %s handled at once", key))
	}
	en.inFlight[key] = true
	en.mu.Unlock()
	for n, m := en.now.Add(1), en.max.Load(); n > m && !en.max.CompareAndSwap(m, n); m = en.max.Load() {
	}
	err := work()
	en.now.Add(-1)
	en.mu.Lock()
	defer en.mu.Unlock()
	en.inFlight[key] = false
	if err != nil {
		return err
	}
	if en.last[key] != e.Version-1 {
		en.errs = append(en.errs, fmt.Sprintf("%s: version %d handled after %d", key, e.Version, en.last[key]))
	}
	en.last[key] = e.Version
	return en.seen.handle(ctx, e)
}

func (en *entities) check(t *testing.T, events []eventstore.Event) {
	t.Helper()
	en.mu.Lock()
	defer en.mu.Unlock()
	for _, e := range en.errs {
		t.Error(e)
	}
	for _, e := range events {
		if n := en.seen.times(e); n != 1 {
			t.Errorf("event %s of %s handled %d times", e.StreamID, e.EntityID, n)
		}
	}
}

// busy is a handler's work: a few microseconds to a millisecond, so that
// the workers' handlers overlap and finish out of order.
func busy(e eventstore.Event) func() error {
	return func() error {
		time.Sleep(time.Duration(e.Version%7) * 150 * time.Microsecond)
		return nil
	}
}

func TestWorkersKeepEachEntitysOrderAndHandleItOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendBoth(t, s, 37, 29, 15)
	en := newEntities()
	handler := func(ctx context.Context, e eventstore.Event) error { return en.handle(ctx, e, busy(e)) }
	_, stop := start(t, s, eventstore.ConsumerConfig{Streams: []string{"customer", "order"}, Handler: handler, Workers: 8, Batch: 100})
	redistest.Eventually(t, 30*time.Second, "all handled and acked", func() bool {
		return en.seen.has(events) && pending(t, s, "customer", "crm") == 0 && pending(t, s, "order", "crm") == 0
	})
	stop()
	en.check(t, events)
	if en.max.Load() < 2 {
		t.Errorf("at most %d handler at once with 8 workers", en.max.Load())
	}
	if en.max.Load() > 8 {
		t.Errorf("%d handlers at once with 8 workers", en.max.Load())
	}
}

func TestOneWorkerHandlesOneEventAtATime(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendBoth(t, s, 20, 20, 5)
	en := newEntities()
	shared := 0 // unguarded on purpose: -race sees two handlers at once
	handler := func(ctx context.Context, e eventstore.Event) error {
		return en.handle(ctx, e, func() error { shared++; return busy(e)() })
	}
	start(t, s, eventstore.ConsumerConfig{Streams: []string{"customer", "order"}, Handler: handler, Workers: 1})
	redistest.Eventually(t, 30*time.Second, "all handled", func() bool { return en.seen.has(events) })
	en.check(t, events)
	if en.max.Load() != 1 {
		t.Fatalf("%d handlers at once with one worker", en.max.Load())
	}
}

func TestStopMidBatchOfWorkersLosesNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendEntities(t, s, "customer", 64, 3)
	en := newEntities()
	release := make(chan struct{})
	var blocked atomic.Int64
	blocking := func(ctx context.Context, e eventstore.Event) error {
		return en.handle(ctx, e, func() error {
			blocked.Add(1)
			<-release
			return nil
		})
	}
	cfg := eventstore.ConsumerConfig{Group: "crm", Name: "crm-1", Streams: []string{"customer"}, Handler: blocking,
		Workers: 8, Batch: int64(len(events)), ClaimIdle: time.Hour}
	c, err := s.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	redistest.Eventually(t, 10*time.Second, "several handlers blocked", func() bool { return blocked.Load() >= 4 })
	cancel() // the stop arrives while handlers of the batch are blocked
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	handled := en.seen.total()
	if handled != int(blocked.Load()) || handled > 8 {
		t.Fatalf("%d handled after the stop, %d were in flight", handled, blocked.Load())
	}
	if n := pending(t, s, "customer", "crm"); n != int64(len(events)-handled) {
		t.Fatalf("%d pending after the stop, want the %d not handled: those handled are acked", n, len(events)-handled)
	}
	restarted := func(ctx context.Context, e eventstore.Event) error { return en.handle(ctx, e, busy(e)) }
	start(t, s, eventstore.ConsumerConfig{Name: "crm-1", Handler: restarted, Workers: 8, ClaimIdle: time.Hour})
	redistest.Eventually(t, 20*time.Second, "the rest handled on the next start", func() bool {
		return en.seen.has(events) && pending(t, s, "customer", "crm") == 0
	})
	en.check(t, events)
}

func TestFailingEntityDoesNotHoldUpTheOthers(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	bad := event(t, "customer_updated", "bad", 0)
	if _, err := s.Append(context.Background(), "customer", eventstore.Record{Event: bad, Expected: eventstore.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	var fixed atomic.Bool
	var tries atomic.Int64
	en := newEntities()
	handler := func(ctx context.Context, e eventstore.Event) error {
		return en.handle(ctx, e, func() error {
			if e.EntityID == "bad" && !fixed.Load() {
				tries.Add(1)
				return errors.New("not yet")
			}
			return busy(e)()
		})
	}
	c, _ := start(t, s, eventstore.ConsumerConfig{Handler: handler, Workers: 8, RetryDelay: 20 * time.Millisecond,
		MaxRetryDelay: 20 * time.Millisecond, MaxDeliveries: 1000, ClaimIdle: time.Minute})
	var others []eventstore.Event
	for range 5 {
		others = append(others, appendEntities(t, s, "customer", 30, 2)...)
		redistest.Eventually(t, 10*time.Second, "the other entities' events handled", func() bool { return en.seen.has(others) })
	}
	if fixed.Store(true); tries.Load() < 2 {
		t.Fatalf("the failing event was tried %d times", tries.Load())
	}
	redistest.Eventually(t, 10*time.Second, "the failing event handled once fixed, all acked", func() bool {
		return en.seen.times(bad) == 1 && pending(t, s, "customer", "crm") == 0
	})
	en.check(t, others)
	if st, _ := c.Stats(context.Background()); st.Counters.DeadLettered != 0 || st.Counters.Failed != tries.Load() {
		t.Fatalf("counters %+v after %d failures", st.Counters, tries.Load())
	}
}

func TestPanickingHandlerOfAWorkerIsAFailedDelivery(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	poison := appendN(t, s, "customer", 1)[0]
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		if e.ID == poison.ID {
			panic("handler bug")
		}
		return got.handle(ctx, e)
	}
	start(t, s, eventstore.ConsumerConfig{Handler: handler, MaxDeliveries: 3, RetryDelay: time.Millisecond, Workers: 8})
	later := appendEntities(t, s, "customer", 20, 3)
	redistest.Eventually(t, 10*time.Second, "later events handled, the panicking one dead-lettered", func() bool {
		return got.has(later) && len(deadLetters(t, s)) == 1 && pending(t, s, "customer", "crm") == 0
	})
}
