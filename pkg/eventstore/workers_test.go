package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
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

// The workers outlive a batch: the lane reads the next one while they
// handle this one.

// appendOrder appends an event of each entity named, in that order.
func appendOrder(t testing.TB, s *eventstore.Store, ids ...string) []eventstore.Event {
	t.Helper()
	recs := make([]eventstore.Record, len(ids))
	for i, id := range ids {
		recs[i] = eventstore.Record{Event: event(t, "customer_updated", id, i), Expected: eventstore.AnyVersion}
	}
	out, err := s.Append(context.Background(), "customer", recs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// names are n entity names: prefix0, prefix1, …
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// reversed is ids in the reverse order: a batch of them would hand a worker
// its entities in the reverse order of the batch before.
func reversed(ids []string) []string {
	r := slices.Clone(ids)
	slices.Reverse(r)
	return r
}

// gated is a handler that records what it sees (entities) and holds the
// handling of one event until the test opens the gate. A test defers open,
// so that a failure does not leave the consumer's stop waiting for it.
type gated struct {
	*entities
	slow    eventstore.Event
	entered chan struct{} // closed when the slow event's handler runs
	gate    chan struct{} // closed by open, to let it finish
	once    sync.Once
}

func (g *gated) open() { g.once.Do(func() { close(g.gate) }) }

func newGated(slow eventstore.Event) *gated {
	return &gated{entities: newEntities(), slow: slow, entered: make(chan struct{}), gate: make(chan struct{})}
}

func (g *gated) handle(ctx context.Context, e eventstore.Event) error {
	if e.ID != g.slow.ID {
		return g.entities.handle(ctx, e, busy(e))
	}
	return g.entities.handle(ctx, e, func() error {
		close(g.entered)
		<-g.gate
		return nil
	})
}

func (g *gated) waitEntered(t *testing.T) {
	t.Helper()
	redistest.Eventually(t, 10*time.Second, "the slow event's handler running", func() bool {
		select {
		case <-g.entered:
			return true
		default:
			return false
		}
	})
}

// handledOf counts the events handled of those given.
func (en *entities) handledOf(events []eventstore.Event) int {
	n := 0
	for _, e := range events {
		n += min(en.seen.times(e), 1)
	}
	return n
}

func TestEntityAcrossTwoBatchesKeepsItsOrderBehindASlowEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	// Two batches of the same 16 entities, the second in the reverse order:
	// each entity's second event is in the second batch, "slow"'s first
	// event is the first of all and its second the last.
	ids := append([]string{"slow"}, names("e", 15)...)
	first := appendOrder(t, s, ids...)
	second := appendOrder(t, s, reversed(ids)...)
	g := newGated(first[0])
	defer g.open()
	start(t, s, eventstore.ConsumerConfig{Handler: g.handle, Workers: 4, Batch: int64(len(ids)), ClaimIdle: time.Hour})
	g.waitEntered(t)
	redistest.Eventually(t, 10*time.Second, "events of the second batch handled while the slow one blocks", func() bool {
		return g.handledOf(second) > 0
	})
	if n := g.seen.times(second[len(second)-1]); n != 0 {
		t.Fatalf("the slow entity's second event handled %d times before its first", n)
	}
	g.open()
	events := append(first, second...)
	redistest.Eventually(t, 10*time.Second, "all handled and acked", func() bool {
		return g.seen.has(events) && pending(t, s, "customer", "crm") == 0
	})
	g.check(t, events)
	if g.max.Load() > 4 {
		t.Errorf("%d handlers at once with 4 workers", g.max.Load())
	}
}

func TestOneWorkerHandlesOneEventAtATimeAcrossBatches(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ids := names("e", 5)
	first := appendOrder(t, s, ids...) // e0, the first of all, is slow
	events := append(first, appendOrder(t, s, reversed(ids)...)...)
	events = append(events, appendOrder(t, s, ids...)...)
	g := newGated(first[0])
	defer g.open()
	shared := 0 // unguarded on purpose: -race sees two handlers at once
	handler := func(ctx context.Context, e eventstore.Event) error { shared++; return g.handle(ctx, e) }
	start(t, s, eventstore.ConsumerConfig{Handler: handler, Workers: 1, Batch: int64(len(ids)), ClaimIdle: time.Hour})
	g.waitEntered(t)
	redistest.Eventually(t, 10*time.Second, "the second batch read while the first event blocks", func() bool {
		return pending(t, s, "customer", "crm") == int64(2*len(ids))
	})
	if n := g.seen.total(); n != 0 {
		t.Fatalf("%d events handled beside the slow one with one worker", n)
	}
	g.open()
	redistest.Eventually(t, 10*time.Second, "all handled and acked", func() bool {
		return g.seen.has(events) && pending(t, s, "customer", "crm") == 0
	})
	g.check(t, events)
	if g.max.Load() != 1 {
		t.Fatalf("%d handlers at once with one worker", g.max.Load())
	}
}

func checkpoint(t testing.TB, s *eventstore.Store) string {
	t.Helper()
	cp, err := s.Redis().HGet(context.Background(), s.CheckpointKey("customer"), "crm").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return cp
}

// pendingIDs are the stream IDs of the group's pending entries.
func pendingIDs(t testing.TB, s *eventstore.Store) map[string]bool {
	t.Helper()
	p, err := s.Redis().XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: s.StreamKey("customer"), Group: "crm", Start: "-", End: "+", Count: 10000,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, e := range p {
		ids[e.ID] = true
	}
	return ids
}

func TestCheckpointDoesNotPassASlowEventWhileLaterOnesAreDone(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendOrder(t, s, names("a", 5)...)         // batch 1, done
	events = append(events, appendOrder(t, s, "slow")...) // the first of batch 2
	events = append(events, appendOrder(t, s, names("b", 14)...)...)
	g := newGated(events[5])
	defer g.open()
	// Keep steps every 20ms ack what is handled while the slow one blocks.
	start(t, s, eventstore.ConsumerConfig{Handler: g.handle, Workers: 4, Batch: 5, ClaimIdle: 60 * time.Millisecond})
	g.waitEntered(t)
	redistest.Eventually(t, 10*time.Second, "entries after the slow one acked while it blocks", func() bool {
		p := pendingIDs(t, s)
		for _, e := range events[6:] {
			if g.seen.times(e) > 0 && !p[e.StreamID] {
				return true
			}
		}
		return false
	})
	if cp := checkpoint(t, s); cp != events[4].StreamID {
		t.Fatalf("checkpoint %q while %s is in flight, want the end of the first batch %s", cp, events[5].StreamID, events[4].StreamID)
	}
	g.open()
	redistest.Eventually(t, 10*time.Second, "all handled, the checkpoint at the end", func() bool {
		return g.seen.has(events) && checkpoint(t, s) == events[len(events)-1].StreamID
	})
	g.check(t, events)
}

func TestStopWithTwoBatchesInFlightLosesNothingAndHandlesNothingTwice(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ids := append([]string{"slow"}, names("e", 9)...)
	events := appendOrder(t, s, ids...) // "slow" first: it holds up its slot
	for range 2 {
		events = append(events, appendOrder(t, s, ids...)...)
	}
	g := newGated(events[0])
	defer g.open()
	cfg := eventstore.ConsumerConfig{Group: "crm", Name: "crm-1", Streams: []string{"customer"}, Handler: g.handle,
		Workers: 4, Batch: int64(len(ids)), ClaimIdle: time.Hour}
	c, err := s.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	g.waitEntered(t)
	read := events[:2*len(ids)]
	redistest.Eventually(t, 10*time.Second, "the second batch read and partly handled", func() bool {
		return pending(t, s, "customer", "crm") == int64(len(read)) && g.handledOf(read[len(ids):]) > 0
	})
	cancel() // the stop arrives while the workers have two batches
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p := pendingIDs(t, s)
	for _, e := range read {
		if handled := g.seen.times(e) > 0; handled == p[e.StreamID] {
			t.Errorf("event %s of %s: handled %v, pending %v after the stop", e.StreamID, e.EntityID, handled, p[e.StreamID])
		}
	}
	if !p[events[len(ids)].StreamID] {
		t.Fatal("the slow entity's second event, behind its first, is not pending after the stop")
	}
	restarted := func(ctx context.Context, e eventstore.Event) error {
		return g.entities.handle(ctx, e, func() error { return nil })
	}
	start(t, s, eventstore.ConsumerConfig{Name: "crm-1", Handler: restarted, Workers: 4, ClaimIdle: time.Hour})
	redistest.Eventually(t, 10*time.Second, "the rest handled on the next start", func() bool {
		return g.seen.has(events) && pending(t, s, "customer", "crm") == 0
	})
	g.check(t, events)
}
