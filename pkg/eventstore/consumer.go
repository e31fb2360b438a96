package eventstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler handles one event. An error leaves the event pending, so it is
// delivered again; handlers must therefore make their effects idempotent.
// An error that matches ErrSkip is final instead.
type Handler func(ctx context.Context, e Event) error

// ErrSkip marks a handler's error as final: the event can never succeed,
// e.g. the customer it would mail is gone. Retrying it, dead-lettering it
// and replaying it would all fail the same way, so the consumer acks it and
// counts it as skipped. Wrap the cause with Skip.
var ErrSkip = errors.New("skipped")

// Skip marks err as final (see ErrSkip).
func Skip(err error) error { return fmt.Errorf("%w: %w", ErrSkip, err) }

// ConsumerConfig configures a consumer. Zero values take the defaults.
type ConsumerConfig struct {
	Group         string        // the consuming service, e.g. "crm"
	Name          string        // unique per replica, e.g. its hostname
	Streams       []string      // entity types, e.g. {"customer", "order"}
	Handler       Handler       //
	Batch         int64         // entries per read (default 50)
	Block         time.Duration // how long one read waits (default 1s)
	ClaimIdle     time.Duration // idle time after which entries of a consumer that is gone are claimed (default 30s)
	RetryDelay    time.Duration // wait before a failed entry's first retry, doubled for each next one (default 200ms)
	MaxRetryDelay time.Duration // cap of that wait (default 30s)
	MaxDeliveries int64         // deliveries before an entry is dead (default 15)
	MaxBackoff    time.Duration // cap of the wait while Redis is away (default 5s)
	Workers       int           // handlers at once, each entity's events on one of them in order (default 1: one event at a time)
	Logger        *slog.Logger
	OnDeadLetter  func(streamKey string) // called for each entry moved to the dead letters, e.g. to count it
}

// Consumer reads streams through a consumer group. It reads each stream on
// its own, in a lane of its own, as Redis Cluster serves no read across hash
// slots; the lanes share the counters and the workers' slots (workers.go).
type Consumer struct {
	store   *Store
	cfg     ConsumerConfig
	handler Handler // cfg.Handler with its panics as failures
	counts  *counters
	lanes   []*Consumer // one per stream, each a Consumer of that stream alone
	running atomic.Bool

	// handling has a lock per worker slot, which the lanes and Replay share:
	// the events of one entity, which all hash to one slot, are handled one
	// at a time, and with one worker all events are.
	handling []sync.Mutex
	seed     maphash.Seed // of the slots' hash
	// A lane's own: failed entries waiting for their next delivery, when
	// they were last kept owned, and the acks that go with the next round trip;
	// the batches in the workers' hands, oldest first, when they were last
	// kept owned, and per slot when its entries handed out so far are done.
	retries     []retry
	retriesKept time.Time
	owed        []owedAck
	batches     []*batch
	kept        time.Time
	tails       []chan struct{}
}

// NewConsumer returns a consumer; Run starts it.
func (s *Store) NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Group == "" || cfg.Name == "" || len(cfg.Streams) == 0 || cfg.Handler == nil {
		return nil, errors.New("eventstore: consumer needs a group, a name, streams and a handler")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Block, time.Second)
	def(&cfg.ClaimIdle, 30*time.Second)
	def(&cfg.RetryDelay, 200*time.Millisecond)
	def(&cfg.MaxRetryDelay, 30*time.Second)
	def(&cfg.MaxBackoff, 5*time.Second)
	if cfg.Batch <= 0 {
		cfg.Batch = 50
	}
	cfg.Workers = max(cfg.Workers, 1)
	if cfg.MaxDeliveries <= 0 {
		// About four minutes of retries with the default delays: an outage of
		// what the handler calls that is over within minutes dead-letters nothing.
		cfg.MaxDeliveries = 15
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// A panic that escaped would stop the service, and its restart would
	// hand it the same event first: a crash loop.
	c := &Consumer{store: s, cfg: cfg, handler: Recoverer(cfg.Handler), counts: &counters{},
		handling: make([]sync.Mutex, cfg.Workers), seed: maphash.MakeSeed()}
	for _, stream := range cfg.Streams {
		lane := &Consumer{store: s, cfg: cfg, handler: c.handler, counts: c.counts, handling: c.handling, seed: c.seed}
		lane.cfg.Streams = []string{stream}
		c.lanes = append(c.lanes, lane)
	}
	return c, nil
}

// Running reports whether the consumer is connected and reading every stream.
func (c *Consumer) Running() bool {
	if c.lanes == nil {
		return c.running.Load()
	}
	for _, l := range c.lanes {
		if !l.Running() {
			return false
		}
	}
	return true
}

// Run consumes until ctx is done. A stop lets the handlers in flight finish and
// acks what was handled. While Redis is away it retries with a capped backoff.
func (c *Consumer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range c.lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// run is a lane's Run.
func (c *Consumer) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for first := true; ; first = false {
		if !first {
			c.counts.reconnections.Add(1)
		}
		err := c.session(ctx)
		if c.running.Swap(false) {
			backoff = 100 * time.Millisecond // it had recovered: start small again
		}
		if ctx.Err() != nil {
			return
		}
		c.cfg.Logger.Warn("consumer interrupted", "group", c.cfg.Group, "consumer", c.cfg.Name, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// session runs until an error: it makes sure the groups exist, catches up
// from the archive on what a group is behind its stream's start by, handles
// its own pending entries, then reads new ones, retries failed ones when they are due
// and claims idle ones.
func (c *Consumer) session(ctx context.Context) error {
	c.retries = nil // the re-read of its own pending entries delivers them again
	defer c.flush(context.WithoutCancel(ctx))
	defer c.settle(ctx, 0) // before the flush, which acks what the workers did
	if err := c.createGroups(ctx); err != nil {
		return err
	}
	if err := c.catchUp(ctx); err != nil {
		return err
	}
	if err := c.readOwnPending(ctx); err != nil {
		return err
	}
	c.running.Store(true)
	lastClaim := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastClaim) >= c.claimEvery() {
			// Not beside the workers' batches: the claim would take an entry
			// of theirs whose keep step is late as idle, and hand it out twice.
			c.settle(ctx, 0)
			if err := c.claimIdle(ctx); err != nil {
				return err
			}
			lastClaim = time.Now()
		}
		if err := c.retryDue(ctx); err != nil {
			return err
		}
		if err := c.read(ctx, ">", c.wait()); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

func (c *Consumer) claimEvery() time.Duration { return max(c.cfg.ClaimIdle/2, 10*time.Millisecond) }

// wait is how long a read may block: not past the next claim pass, the next
// due retry, or the next time the waiting retries must be kept owned.
func (c *Consumer) wait() time.Duration {
	w := min(c.cfg.Block, c.claimEvery())
	if next, ok := c.nextRetry(); ok {
		w = min(w, time.Until(next), c.keepEvery())
	}
	return max(w, time.Millisecond) // BLOCK 0 would wait forever
}

// readOwnPending handles the entries this consumer was given but never acked,
// e.g. because it died mid-batch.
func (c *Consumer) readOwnPending(ctx context.Context) error {
	for _, s := range c.cfg.Streams {
		for from := "0"; ctx.Err() == nil; {
			var read *redis.XStreamSliceCmd
			c.withAcks(ctx, func(r redis.Cmdable) {
				read = r.XReadGroup(ctx, &redis.XReadGroupArgs{
					Group: c.cfg.Group, Consumer: c.cfg.Name, Streams: []string{c.store.StreamKey(s), from}, Count: c.cfg.Batch, Block: -1,
				})
			})
			msgs, err := read.Result()
			if errors.Is(err, redis.Nil) {
				break
			}
			if err != nil {
				return err
			}
			if len(msgs) == 0 || len(msgs[0].Messages) == 0 {
				break
			}
			c.counts.recovered.Add(int64(len(msgs[0].Messages)))
			c.handle(ctx, s, msgs[0].Messages, true)
			from = msgs[0].Messages[len(msgs[0].Messages)-1].ID
		}
	}
	return nil
}

// read reads new entries of all streams and hands them to the workers. The
// acks owed for the last batch go in the same round trip, and then the read
// does not block, nor while the workers have a batch: when it finds
// nothing, the workers finish what they have, and the next read blocks.
func (c *Consumer) read(ctx context.Context, id string, block time.Duration) error {
	if len(c.owed) > 0 || len(c.batches) > 0 {
		block = -1
	}
	args := &redis.XReadGroupArgs{Group: c.cfg.Group, Consumer: c.cfg.Name, Count: c.cfg.Batch, Block: block}
	for _, s := range c.cfg.Streams {
		args.Streams = append(args.Streams, c.store.StreamKey(s))
	}
	for range c.cfg.Streams {
		args.Streams = append(args.Streams, id)
	}
	var read *redis.XStreamSliceCmd
	c.withAcks(ctx, func(r redis.Cmdable) { read = r.XReadGroup(ctx, args) })
	res, err := read.Result()
	if errors.Is(err, redis.Nil) {
		c.settle(ctx, 0)
	}
	if err != nil {
		return err
	}
	for i, r := range res {
		c.handle(ctx, c.streamOf(r.Stream, i), r.Messages, false)
	}
	return nil
}

func (c *Consumer) streamOf(key string, hint int) string {
	for _, s := range c.cfg.Streams {
		if c.store.StreamKey(s) == key {
			return s
		}
	}
	return c.cfg.Streams[hint]
}

// handle hands a batch to the workers, which keep each entity's events in
// order across batches (workers.go), and waits until they have at most one
// batch before it. Entries that were delivered before (recovered: re-read
// or claimed) are first checked for having been delivered too often.
// Handlers and acks run without the stop's cancellation.
func (c *Consumer) handle(ctx context.Context, stream string, msgs []redis.XMessage, recovered bool) {
	if len(msgs) == 0 {
		return
	}
	work := withStream(context.WithoutCancel(ctx), c.store.StreamKey(stream))
	b := &batch{stream: stream, work: work, last: msgs[len(msgs)-1].ID, msgs: msgs}
	if recovered {
		b.msgs = c.deliverable(b.work, stream, msgs)
	}
	c.dispatch(ctx, b)
	c.settle(ctx, maxBatches-1)
}

// finish takes over a batch the workers are done with. It schedules the
// retry of each failed entry or dead-letters it, and owes the ack of the
// handled ones not acked at a keep step, with the checkpoint's advance to
// the batch's end, to the next round trip. After a stop, the entries not
// handled stay pending for the next start.
func (c *Consumer) finish(b *batch) {
	var done []string
	for i, m := range b.msgs {
		switch b.state[i].Load() {
		case handled:
			if !b.acked[i] {
				done = append(done, m.ID)
			}
		case failed:
			c.failed(b.work, b.stream, m, b.err[i])
		}
	}
	c.owed = append(c.owed, owedAck{stream: b.stream, last: b.last, done: done})
}

func (c *Consumer) handleOne(ctx context.Context, slot int, m redis.XMessage) error {
	e, err := decode(m.ID, m.Values)
	if err != nil {
		return err
	}
	return c.handleEvent(ctx, slot, e)
}

type streamKey struct{}

func withStream(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, streamKey{}, key)
}

// StreamOf is the key of the stream a consumer read the event it hands a
// handler from, e.g. for middleware that measures per stream; "" elsewhere.
func StreamOf(ctx context.Context) string {
	key, _ := ctx.Value(streamKey{}).(string)
	return key
}

// handleEvent hands one event to the handler, holding its entity's slot.
func (c *Consumer) handleEvent(ctx context.Context, slot int, e Event) error {
	c.handling[slot].Lock()
	defer c.handling[slot].Unlock()
	return c.handler(ctx, e)
}
