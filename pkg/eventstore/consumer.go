package eventstore

import (
	"context"
	"errors"
	"fmt"
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
	Logger        *slog.Logger
	OnDeadLetter  func(streamKey string) // called for each entry moved to the dead letters, e.g. to count it
}

// Consumer reads streams through a consumer group. It reads each stream on
// its own, in a lane of its own, as Redis Cluster serves no read across hash
// slots; the lanes share the counters and handle one event at a time.
type Consumer struct {
	store   *Store
	cfg     ConsumerConfig
	handler Handler // cfg.Handler with its panics as failures
	counts  *counters
	lanes   []*Consumer // one per stream, each a Consumer of that stream alone
	running atomic.Bool

	// handling lets one event be handled at a time, by a lane or by Replay:
	// handlers may count on that, as they do within one lane.
	handling *sync.Mutex
	// A lane's own: failed entries waiting for their next delivery, and when
	// they were last kept owned.
	retries     []retry
	retriesKept time.Time
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
	c := &Consumer{store: s, cfg: cfg, handler: Recoverer(cfg.Handler), counts: &counters{}, handling: &sync.Mutex{}}
	for _, stream := range cfg.Streams {
		lane := &Consumer{store: s, cfg: cfg, handler: c.handler, counts: c.counts, handling: c.handling}
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

// Run consumes until ctx is done. A stop lets the handler in flight finish and
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

// session runs until an error: it makes sure the groups exist, handles its own
// pending entries, then reads new ones, retries failed ones when they are due
// and claims idle ones.
func (c *Consumer) session(ctx context.Context) error {
	c.retries = nil // the re-read of its own pending entries delivers them again
	if err := c.createGroups(ctx); err != nil {
		return err
	}
	if err := c.readOwnPending(ctx); err != nil {
		return err
	}
	c.running.Store(true)
	lastClaim := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastClaim) >= c.claimEvery() {
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
			msgs, err := c.store.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: c.cfg.Group, Consumer: c.cfg.Name, Streams: []string{c.store.StreamKey(s), from}, Count: c.cfg.Batch,
			}).Result()
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

// read reads new entries of all streams and handles them.
func (c *Consumer) read(ctx context.Context, id string, block time.Duration) error {
	args := &redis.XReadGroupArgs{Group: c.cfg.Group, Consumer: c.cfg.Name, Count: c.cfg.Batch, Block: block}
	for _, s := range c.cfg.Streams {
		args.Streams = append(args.Streams, c.store.StreamKey(s))
	}
	for range c.cfg.Streams {
		args.Streams = append(args.Streams, id)
	}
	res, err := c.store.rdb.XReadGroup(ctx, args).Result()
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

// handle runs the handler on each entry in order, then acks the ones that
// succeeded and advances the checkpoint in one step (and so at each keep
// step on the way, for the ones handled by then). Entries that were
// delivered before (recovered: re-read or claimed) are first checked for
// having been delivered too often. While it works through the batch it keeps
// the rest of the batch owned, and skips entries another consumer took
// meanwhile. A stop between entries leaves the rest pending for the next
// start. Handlers and acks run without the stop's cancellation.
func (c *Consumer) handle(ctx context.Context, stream string, msgs []redis.XMessage, recovered bool) {
	if len(msgs) == 0 {
		return
	}
	work := withStream(context.WithoutCancel(ctx), c.store.StreamKey(stream))
	last := msgs[len(msgs)-1].ID
	if recovered {
		msgs = c.deliverable(work, stream, msgs)
	}
	var done []string
	kept, taken := time.Now(), map[string]bool{}
	for i, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		if time.Since(kept) > c.keepEvery() {
			// Handled entries would look idle too: ack them now.
			if len(done) > 0 {
				c.ack(work, stream, done[len(done)-1], done)
				done = nil
			}
			taken = c.keepBatch(work, stream, msgs[i:])
			if err := c.keepRetriesOwned(work); err != nil {
				c.cfg.Logger.Warn("keeping retries owned failed", "group", c.cfg.Group, "err", err)
			}
			kept = time.Now()
		}
		if taken[m.ID] {
			continue // another consumer has it now; handling it too would be a second delivery
		}
		c.counts.consumed.Add(1)
		switch err := c.handleOne(work, m); {
		case errors.Is(err, ErrSkip):
			c.counts.skipped.Add(1) // the router's Logging middleware says why
		case err != nil:
			c.counts.failed.Add(1)
			c.failed(work, stream, m, err)
			continue
		default:
			c.counts.succeeded.Add(1)
		}
		done = append(done, m.ID)
	}
	c.ack(work, stream, last, done)
}

func (c *Consumer) handleOne(ctx context.Context, m redis.XMessage) error {
	e, err := decode(m.ID, m.Values)
	if err != nil {
		return err
	}
	return c.handleEvent(ctx, e)
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

// handleEvent hands one event to the handler, one at a time.
func (c *Consumer) handleEvent(ctx context.Context, e Event) error {
	c.handling.Lock()
	defer c.handling.Unlock()
	return c.handler(ctx, e)
}
