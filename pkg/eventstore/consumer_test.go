package eventstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// seen records which events a handler got, and how often.
type seen struct {
	mu    sync.Mutex
	count map[string]int
}

func newSeen() *seen { return &seen{count: map[string]int{}} }

func (s *seen) handle(_ context.Context, e eventstore.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count[e.ID]++
	return nil
}

func (s *seen) has(events []eventstore.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		if s.count[e.ID] == 0 {
			return false
		}
	}
	return true
}

func (s *seen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.count)
}

// start runs a consumer until the returned stop is called; stop waits for Run.
func start(t testing.TB, s *eventstore.Store, cfg eventstore.ConsumerConfig) (*eventstore.Consumer, func()) {
	t.Helper()
	if cfg.Group == "" {
		cfg.Group = "crm"
	}
	if cfg.Name == "" {
		cfg.Name = "crm-1"
	}
	if len(cfg.Streams) == 0 {
		cfg.Streams = []string{"customer"}
	}
	if cfg.Block == 0 {
		cfg.Block = 50 * time.Millisecond
	}
	c, err := s.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func pending(t testing.TB, s *eventstore.Store, stream, group string) int64 {
	t.Helper()
	p, err := s.Redis().XPending(context.Background(), s.StreamKey(stream), group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func TestStoppedConsumerCatchesUp(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	got := newSeen()
	_, stop := start(t, s, eventstore.ConsumerConfig{Handler: got.handle})
	first := appendN(t, s, "customer", 10)
	redistest.Eventually(t, 10*time.Second, "first events handled", func() bool { return got.has(first) })
	stop()

	missed := appendN(t, s, "customer", 1000)
	_, stop = start(t, s, eventstore.ConsumerConfig{Handler: got.handle})
	redistest.Eventually(t, 20*time.Second, "1,000 missed events handled", func() bool { return got.has(missed) })
	stop()
	if got.len() != 1010 {
		t.Fatalf("handled %d distinct events, want 1010", got.len())
	}
	if n := pending(t, s, "customer", "crm"); n != 0 {
		t.Fatalf("%d entries still pending", n)
	}
}

func TestGroupStartsAtTheStreamsStart(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	before := appendN(t, s, "customer", 20)
	got := newSeen()
	start(t, s, eventstore.ConsumerConfig{Handler: got.handle})
	redistest.Eventually(t, 10*time.Second, "events from before the group existed handled", func() bool { return got.has(before) })
}

// deliverWithoutAck reads entries as consumer name and never acks them: a
// consumer that died mid-batch.
func deliverWithoutAck(t testing.TB, s *eventstore.Store, name string, n int64) {
	t.Helper()
	ctx := context.Background()
	key := s.StreamKey("customer")
	if err := s.Redis().XGroupCreateMkStream(ctx, key, "crm", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := s.Redis().XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crm", Consumer: name, Streams: []string{key, ">"}, Count: n}).Result()
	if err != nil || int64(len(res[0].Messages)) != n {
		t.Fatalf("delivering %d entries: %v", n, err)
	}
}

func TestRestartedConsumerRereadsItsOwnPending(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendN(t, s, "customer", 30)
	deliverWithoutAck(t, s, "crm-1", 30)
	got := newSeen()
	// ClaimIdle is long, so only the re-read of its own pending entries can deliver them.
	c, _ := start(t, s, eventstore.ConsumerConfig{Name: "crm-1", Handler: got.handle, ClaimIdle: time.Hour})
	redistest.Eventually(t, 10*time.Second, "own pending entries handled", func() bool { return got.has(events) })
	redistest.Eventually(t, 5*time.Second, "pending acked", func() bool { return pending(t, s, "customer", "crm") == 0 })
	st, _ := c.Stats(context.Background())
	if st.Counters.Recovered != 30 {
		t.Fatalf("recovered %d, want 30", st.Counters.Recovered)
	}
}

func TestIdleEntriesOfADeadConsumerAreClaimed(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	events := appendN(t, s, "customer", 30)
	deliverWithoutAck(t, s, "crm-dead", 30)
	got := newSeen()
	start(t, s, eventstore.ConsumerConfig{Name: "crm-2", Handler: got.handle, ClaimIdle: 100 * time.Millisecond})
	redistest.Eventually(t, 10*time.Second, "entries of the dead consumer claimed and handled", func() bool { return got.has(events) })
	redistest.Eventually(t, 5*time.Second, "pending acked", func() bool { return pending(t, s, "customer", "crm") == 0 })
}

func TestConsumersInOneGroupShareTheWork(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, b := newSeen(), newSeen()
	start(t, s, eventstore.ConsumerConfig{Name: "crm-a", Handler: a.handle, Batch: 5})
	start(t, s, eventstore.ConsumerConfig{Name: "crm-b", Handler: b.handle, Batch: 5})
	var events []eventstore.Event
	for range 50 {
		events = append(events, appendN(t, s, "customer", 10)...)
	}
	redistest.Eventually(t, 10*time.Second, "all handled", func() bool { return a.len()+b.len() == len(events) })
	for id := range a.count {
		if b.count[id] > 0 {
			t.Fatalf("event %s handled by both consumers", id)
		}
	}
	if a.len() == 0 || b.len() == 0 {
		t.Fatalf("one consumer did all the work: %d and %d", a.len(), b.len())
	}
}

func TestOneConsumerReadsSeveralStreams(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	got := newSeen()
	start(t, s, eventstore.ConsumerConfig{Streams: []string{"customer", "order"}, Handler: got.handle})
	events := append(appendN(t, s, "customer", 10), appendN(t, s, "order", 10)...)
	redistest.Eventually(t, 10*time.Second, "events of both streams handled", func() bool { return got.has(events) })
}

func TestFailingEventIsDeadLetteredAndReplayed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	poison := appendN(t, s, "customer", 1)[0]
	var fixed atomic.Bool
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		if e.ID == poison.ID && !fixed.Load() {
			return errors.New("cannot handle this one")
		}
		return got.handle(ctx, e)
	}
	c, _ := start(t, s, eventstore.ConsumerConfig{Handler: handler, MaxDeliveries: 3, ClaimIdle: 20 * time.Millisecond})
	later := appendN(t, s, "customer", 20)
	redistest.Eventually(t, 10*time.Second, "later events flow past the failing one", func() bool { return got.has(later) })

	var dead []eventstore.DeadLetter
	redistest.Eventually(t, 10*time.Second, "failing event dead-lettered", func() bool {
		dead, _ = s.DeadLetters(ctx, "customer", "crm", 10)
		return len(dead) == 1
	})
	d := dead[0]
	if d.StreamID != poison.StreamID || d.Values["event_id"] != poison.ID || d.Stream != "customer" || d.Deliveries != 3 || d.Error == "" || d.Group != "crm" {
		t.Fatalf("dead letter %+v", d)
	}
	redistest.Eventually(t, 5*time.Second, "dead letter acked", func() bool { return pending(t, s, "customer", "crm") == 0 })
	st, err := c.Stats(ctx)
	if err != nil || st.Counters.DeadLettered != 1 || st.Streams[0].Groups[0].DeadLetters != 1 {
		t.Fatalf("stats %+v, %v", st, err)
	}
	if err := c.Replay(ctx, "customer", d.ID); !errors.Is(err, eventstore.ErrReplayFailed) {
		t.Fatalf("replay into a handler that still fails: %v", err)
	}
	fixed.Store(true)
	if err := c.Replay(ctx, "customer", d.ID); err != nil {
		t.Fatal(err)
	}
	if !got.has([]eventstore.Event{poison}) {
		t.Fatal("replayed event not handled")
	}
	if dead, _ = s.DeadLetters(ctx, "customer", "crm", 10); len(dead) != 0 {
		t.Fatalf("%d dead letters left after replay", len(dead))
	}
	if err := c.Replay(ctx, "customer", d.ID); !errors.Is(err, eventstore.ErrNoDeadLetter) {
		t.Fatalf("second replay: %v", err)
	}
}

func TestDestroyedGroupIsRecreated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	got := newSeen()
	c, _ := start(t, s, eventstore.ConsumerConfig{Handler: got.handle})
	first := appendN(t, s, "customer", 5)
	redistest.Eventually(t, 10*time.Second, "first events", func() bool { return got.has(first) })
	if err := s.Redis().XGroupDestroy(ctx, s.StreamKey("customer"), "crm").Err(); err != nil {
		t.Fatal(err)
	}
	after := appendN(t, s, "customer", 5)
	redistest.Eventually(t, 10*time.Second, "events after the group was lost", func() bool { return got.has(after) })
	if st, _ := c.Stats(ctx); st.Counters.Reconnections == 0 {
		t.Fatal("the lost group did not make the consumer start over")
	}
}

func TestConsumerSurvivesARedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	s := eventstore.New(srv.Client(t), "")
	got := newSeen()
	c, _ := start(t, s, eventstore.ConsumerConfig{Handler: got.handle, MaxBackoff: 200 * time.Millisecond})
	before := appendN(t, s, "customer", 100)
	redistest.Eventually(t, 10*time.Second, "events before the restart", func() bool { return got.has(before) })

	srv.Stop(t)
	// It notices when a read fails, after the client's dial retries, and
	// says so once it has given up on the acks it owed, after as many: about
	// 6 s on a loaded box.
	redistest.Eventually(t, 20*time.Second, "consumer notices Redis is gone", func() bool { return !c.Running() })
	srv.Start(t)
	after := appendN(t, s, "customer", 100)
	redistest.Eventually(t, 20*time.Second, "events after the restart", func() bool { return got.has(after) })
	if st, _ := c.Stats(context.Background()); st.Counters.Reconnections == 0 || !st.Running {
		t.Fatalf("after restart: %+v", st)
	}
}

func TestGracefulStopAcksTheEventInFlight(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int64
	handler := func(ctx context.Context, e eventstore.Event) error {
		if handled.Load() == 0 {
			close(entered)
			<-release
		}
		handled.Add(1)
		return nil
	}
	c, err := s.NewConsumer(eventstore.ConsumerConfig{Group: "crm", Name: "crm-1", Streams: []string{"customer"}, Handler: handler, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	appendN(t, s, "customer", 1)
	<-entered
	cancel() // the stop arrives while the handler runs
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 1 {
		t.Fatalf("handled %d", handled.Load())
	}
	if n := pending(t, s, "customer", "crm"); n != 0 {
		t.Fatalf("the event in flight was not acked: %d pending", n)
	}
}

func TestInfoReportsStreamAndGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	events := appendN(t, s, "customer", 10)
	deliverWithoutAck(t, s, "crm-1", 4)
	info, err := s.Info(ctx, "customer")
	if err != nil {
		t.Fatal(err)
	}
	g := info.Groups[0]
	if info.Length != 10 || info.FirstID != events[0].StreamID || info.LastID != events[9].StreamID ||
		g.Name != "crm" || g.Consumers != 1 || g.Pending != 4 || g.Lag != 6 {
		t.Fatalf("info %+v", info)
	}
	if empty, err := s.Info(ctx, "nothing"); err != nil || empty.Length != 0 {
		t.Fatalf("info of a missing stream: %+v %v", empty, err)
	}
}

func TestSkippedEventIsAckedAndCountedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	gone := appendN(t, s, "customer", 1)[0]
	var calls atomic.Int64
	got := newSeen()
	handler := func(ctx context.Context, e eventstore.Event) error {
		if e.ID == gone.ID {
			calls.Add(1)
			return eventstore.Skip(errors.New("its customer is gone"))
		}
		return got.handle(ctx, e)
	}
	c, _ := start(t, s, eventstore.ConsumerConfig{Handler: handler, MaxDeliveries: 3, RetryDelay: time.Millisecond, ClaimIdle: 20 * time.Millisecond})
	later := appendN(t, s, "customer", 5)
	redistest.Eventually(t, 10*time.Second, "later events handled", func() bool { return got.has(later) })
	redistest.Eventually(t, 5*time.Second, "skipped event acked", func() bool { return pending(t, s, "customer", "crm") == 0 })
	st, err := c.Stats(ctx)
	if err != nil || st.Counters.Skipped != 1 || st.Counters.Failed != 0 || st.Counters.DeadLettered != 0 || calls.Load() != 1 {
		t.Fatalf("stats %+v, %v, handled %d times", st.Counters, err, calls.Load())
	}
	if dead, _ := s.DeadLetters(ctx, "customer", "crm", 10); len(dead) != 0 {
		t.Fatalf("a skipped event was dead-lettered: %+v", dead)
	}
}
