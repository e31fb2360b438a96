package eventstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// The consumer under the ways it goes wrong in production: slow batches,
// panics, outages of what the handler calls, lost groups, replicas that come
// and go.

func (s *seen) times(e eventstore.Event) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[e.ID]
}

func (s *seen) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.count {
		n += c
	}
	return n
}

func deadLetters(t testing.TB, s *eventstore.Store) []eventstore.DeadLetter {
	t.Helper()
	dead, err := s.DeadLetters(context.Background(), "customer", "crm", 100)
	if err != nil {
		t.Fatal(err)
	}
	return dead
}

// deliverAgain claims an entry for consumer name without JUSTID: one more
// delivery on its count, as a consumer that crashed on it would leave it.
func deliverAgain(t testing.TB, s *eventstore.Store, name string, e eventstore.Event) {
	t.Helper()
	err := s.Redis().XClaim(context.Background(), &redis.XClaimArgs{
		Stream: s.StreamKey("customer"), Group: "crm", Consumer: name, Messages: []string{e.StreamID},
	}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

func consumerNames(t testing.TB, s *eventstore.Store) []string {
	t.Helper()
	cs, err := s.Redis().XInfoConsumers(context.Background(), s.StreamKey("customer"), "crm").Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

func TestEntriesOfABatchAreNotClaimedWhileItIsHandled(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			got := newSeen()
			slow := func(ctx context.Context, e eventstore.Event) error {
				time.Sleep(90 * time.Millisecond) // the handler's work: a batch takes 3x ClaimIdle
				return got.handle(ctx, e)
			}
			n := 10 * workers // events of different entities
			cfg := eventstore.ConsumerConfig{Handler: slow, Batch: int64(n), Workers: workers, ClaimIdle: 300 * time.Millisecond}
			cfg.Name = "crm-a"
			a, stopA := start(t, s, cfg)
			cfg.Name = "crm-b"
			b, stopB := start(t, s, cfg)
			redistest.Eventually(t, 5*time.Second, "both consumers reading", func() bool { return a.Running() && b.Running() })
			// Twice, one consumer gets a batch while the other has nothing to do
			// but its claim pass.
			for range 2 {
				events := appendN(t, s, "customer", n)
				redistest.Eventually(t, 20*time.Second, "all handled and acked", func() bool {
					return got.has(events) && pending(t, s, "customer", "crm") == 0
				})
			}
			stopA()
			stopB()
			if got.total() != 2*n {
				t.Fatalf("%d handlings of %d events: entries in flight were claimed by the other consumer", got.total(), 2*n)
			}
		})
	}
}

func TestPanickingHandlerIsDeadLetteredAndTheConsumerGoesOn(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	poison := appendN(t, s, "customer", 1)[0]
	var tries atomic.Int64
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		if e.ID == poison.ID {
			tries.Add(1)
			panic("handler bug")
		}
		return got.handle(ctx, e)
	}
	// No Recoverer: the consumer must be safe on its own.
	start(t, s, eventstore.ConsumerConfig{Handler: handler, MaxDeliveries: 3})
	later := appendN(t, s, "customer", 10)
	redistest.Eventually(t, 10*time.Second, "later events handled", func() bool { return got.has(later) })
	redistest.Eventually(t, 10*time.Second, "the panicking event dead-lettered", func() bool { return len(deadLetters(t, s)) == 1 })
	d := deadLetters(t, s)[0]
	if d.StreamID != poison.StreamID || d.Deliveries != 3 || !strings.Contains(d.Error, "handler bug") || tries.Load() != 3 {
		t.Fatalf("dead letter %+v after %d tries", d, tries.Load())
	}
}

func TestEntryDeliveredTooOftenIsDeadLetteredWithoutHandling(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendN(t, s, "customer", 3)
	deliverWithoutAck(t, s, "crm-1", 3)
	// events[0] is this consumer's own and events[2] a dead consumer's, both
	// delivered MaxDeliveries times already: they may crash the process.
	deliverAgain(t, s, "crm-1", events[0])
	deliverAgain(t, s, "crm-1", events[0])
	deliverAgain(t, s, "crm-dead", events[2])
	deliverAgain(t, s, "crm-dead", events[2])
	got := newSeen()
	start(t, s, eventstore.ConsumerConfig{Name: "crm-1", Handler: got.handle, MaxDeliveries: 3, ClaimIdle: 100 * time.Millisecond})
	redistest.Eventually(t, 10*time.Second, "both dead-lettered, the other handled", func() bool {
		return len(deadLetters(t, s)) == 2 && got.has(events[1:2]) && pending(t, s, "customer", "crm") == 0
	})
	if got.times(events[0]) != 0 || got.times(events[2]) != 0 {
		t.Fatalf("the handler saw entries delivered too often: %d and %d times", got.times(events[0]), got.times(events[2]))
	}
	for _, d := range deadLetters(t, s) {
		if d.StreamID != events[0].StreamID && d.StreamID != events[2].StreamID {
			t.Fatalf("dead letter %+v", d)
		}
	}
}

func TestFailedEventIsRetriedSoonByItsOwnConsumer(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	e := appendN(t, s, "customer", 1)
	var tries atomic.Int64
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		if tries.Add(1) <= 2 {
			return errors.New("msg is away")
		}
		return got.handle(ctx, e)
	}
	// ClaimIdle is long: only the retry can deliver the event again in time.
	start(t, s, eventstore.ConsumerConfig{Handler: handler, ClaimIdle: time.Minute})
	redistest.Eventually(t, 3*time.Second, "handled on the third delivery", func() bool { return got.has(e) })
	redistest.Eventually(t, 3*time.Second, "acked", func() bool { return pending(t, s, "customer", "crm") == 0 })
	if tries.Load() != 3 {
		t.Fatalf("%d tries", tries.Load())
	}
}

// lockedBuffer is a log sink that the consumer's goroutine and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLostGroupIsRecreatedFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	events := appendN(t, s, "customer", 10)
	var lost atomic.Bool
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		if e.ID == events[5].ID && !lost.Load() {
			return errors.New("fails until the group is lost")
		}
		return got.handle(ctx, e)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	start(t, s, eventstore.ConsumerConfig{Handler: handler, Batch: 5, ClaimIdle: time.Minute, Logger: log})
	// The first batch is done, the second waits for its 6th event: the
	// checkpoint is the end of the first batch.
	redistest.Eventually(t, 10*time.Second, "all but the failing one handled", func() bool {
		return got.has(events[:5]) && got.has(events[6:]) && pending(t, s, "customer", "crm") == 1
	})
	lost.Store(true)
	if err := s.Redis().XGroupDestroy(ctx, s.StreamKey("customer"), "crm").Err(); err != nil {
		t.Fatal(err)
	}
	after := appendN(t, s, "customer", 5)
	redistest.Eventually(t, 10*time.Second, "events after the loss handled", func() bool {
		return got.has(after) && got.has(events[5:6]) && pending(t, s, "customer", "crm") == 0
	})
	for i, e := range events {
		want := 1
		if i > 5 {
			want = 2 // after the checkpoint: delivered again
		}
		if n := got.times(e); n != want {
			t.Fatalf("event %d handled %d times, want %d", i, n, want)
		}
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, events[4].StreamID) {
		t.Fatalf("the loss was not logged as an error with the checkpoint:\n%s", l)
	}
}

func TestGoneConsumersAreRemovedFromTheGroup(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendN(t, s, "customer", 3)
	deliverWithoutAck(t, s, "crm-dead", 3)
	if err := s.Redis().XGroupCreateConsumer(context.Background(), s.StreamKey("customer"), "crm", "crm-idle").Err(); err != nil {
		t.Fatal(err)
	}
	got := newSeen()
	start(t, s, eventstore.ConsumerConfig{Name: "crm-2", Handler: got.handle, ClaimIdle: 50 * time.Millisecond})
	redistest.Eventually(t, 10*time.Second, "the dead consumer's entries handled, then the gone consumers removed", func() bool {
		names := consumerNames(t, s)
		return got.has(events) && len(names) == 1 && names[0] == "crm-2"
	})
	if n := pending(t, s, "customer", "crm"); n != 0 {
		t.Fatalf("%d pending", n)
	}
}

func TestDeletedEntriesDoNotStayPending(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendN(t, s, "customer", 5)
	deliverWithoutAck(t, s, "crm-dead", 5)
	if err := s.Redis().XDel(context.Background(), s.StreamKey("customer"), events[1].StreamID, events[3].StreamID).Err(); err != nil {
		t.Fatal(err)
	}
	got := newSeen()
	start(t, s, eventstore.ConsumerConfig{Name: "crm-2", Handler: got.handle, ClaimIdle: 50 * time.Millisecond})
	redistest.Eventually(t, 10*time.Second, "the rest handled, nothing pending", func() bool {
		return got.has([]eventstore.Event{events[0], events[2], events[4]}) && pending(t, s, "customer", "crm") == 0
	})
}

func TestReplayDoesNotRunBesideTheConsumersHandling(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	poison := appendN(t, s, "customer", 5)
	var fixed, overlapped atomic.Bool
	var inFlight atomic.Int64
	shared := 0 // unguarded on purpose: -race sees two handlers at once
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		if inFlight.Add(1) > 1 {
			overlapped.Store(true)
		}
		defer inFlight.Add(-1)
		shared++
		if !fixed.Load() {
			return errors.New("not yet")
		}
		time.Sleep(time.Millisecond) // the handler's work
		return got.handle(ctx, e)
	}
	c, _ := start(t, s, eventstore.ConsumerConfig{Handler: handler, MaxDeliveries: 1})
	redistest.Eventually(t, 10*time.Second, "dead-lettered", func() bool { return len(deadLetters(t, s)) == len(poison) })
	fixed.Store(true)
	events := appendN(t, s, "customer", 300)
	redistest.Eventually(t, 10*time.Second, "the consumer busy", func() bool { return got.len() > 0 })
	for _, d := range deadLetters(t, s) {
		if err := c.Replay(ctx, "customer", d.ID); err != nil {
			t.Fatal(err)
		}
	}
	redistest.Eventually(t, 20*time.Second, "all handled", func() bool { return got.has(events) && got.has(poison) })
	if overlapped.Load() {
		t.Fatal("a replay ran beside the consumer's handling")
	}
}

func TestGracefulStopLeavesTheRestOfTheBatchPending(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendN(t, s, "customer", 10)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		once.Do(func() { close(entered); <-release })
		return got.handle(ctx, e)
	}
	cfg := eventstore.ConsumerConfig{Group: "crm", Name: "crm-1", Streams: []string{"customer"}, Handler: handler, Batch: 10, ClaimIdle: time.Hour}
	c, err := s.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	<-entered
	cancel() // the stop arrives while the first of ten is handled
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got.total() != 1 || pending(t, s, "customer", "crm") != 9 {
		t.Fatalf("after the stop: %d handled, %d pending; want 1 and 9", got.total(), pending(t, s, "customer", "crm"))
	}
	start(t, s, eventstore.ConsumerConfig{Name: "crm-1", Handler: got.handle, ClaimIdle: time.Hour})
	redistest.Eventually(t, 10*time.Second, "the rest handled on the next start", func() bool {
		return got.has(events) && pending(t, s, "customer", "crm") == 0
	})
	if got.total() != 10 {
		t.Fatalf("%d handlings of 10 events", got.total())
	}
}

func TestLiveConsumersOfAQuietStreamStayInTheGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	names := []string{"crm-a", "crm-b", "crm-c", "crm-gone"}
	// In the group before they start, as after their first reads.
	if err := s.Redis().XGroupCreateMkStream(ctx, s.StreamKey("customer"), "crm", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := s.Redis().XGroupCreateConsumer(ctx, s.StreamKey("customer"), "crm", name).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	const claimIdle = 250 * time.Millisecond // its marks come every 125 ms: a busy machine may delay one, not three
	// They come back after a while: Redis counts them idle since they left.
	redistest.Eventually(t, 10*time.Second, "the consumers idle past 2×ClaimIdle", func() bool {
		cs, err := s.Redis().XInfoConsumers(ctx, s.StreamKey("customer"), "crm").Result()
		return err == nil && len(cs) == len(names) && slices.IndexFunc(cs, func(c redis.XInfoConsumer) bool { return c.Idle <= 2*claimIdle }) < 0
	})
	var consumers []*eventstore.Consumer
	var stop func()
	for _, name := range names {
		var c *eventstore.Consumer
		c, stop = start(t, s, eventstore.ConsumerConfig{Name: name, Handler: newSeen().handle, ClaimIdle: claimIdle, Logger: log})
		consumers = append(consumers, c)
	}
	// The first to start may remove the others, which were gone until they
	// start: each joins again as it starts.
	redistest.Eventually(t, 10*time.Second, "all reading", func() bool {
		return !slices.ContainsFunc(consumers, func(c *eventstore.Consumer) bool { return !c.Running() })
	})
	before := len(logs.String())
	stop() // crm-gone's
	began := time.Now()
	redistest.Eventually(t, 10*time.Second, "5×ClaimIdle passed and the stopped consumer removed", func() bool {
		return time.Since(began) > 5*claimIdle && !slices.Contains(consumerNames(t, s), "crm-gone")
	})
	for line := range strings.Lines(logs.String()[before:]) {
		if strings.Contains(line, "removed consumers") && !strings.Contains(line, "consumers=[crm-gone]") {
			t.Errorf("a live consumer was removed: %s", line)
		}
	}
	if got := consumerNames(t, s); !slices.Equal(got, names[:3]) {
		t.Fatalf("the group lists %v, want %v", got, names[:3])
	}
}
