package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler handles one event. An error leaves the event pending, so it is
// delivered again; handlers must therefore make their effects idempotent.
type Handler func(ctx context.Context, e Event) error

// ConsumerConfig configures a consumer. Zero values take the defaults.
type ConsumerConfig struct {
	Group         string        // the consuming service, e.g. "crm"
	Name          string        // stable per replica, e.g. "crm-1"
	Streams       []string      // entity types, e.g. {"customer", "order"}
	Handler       Handler       //
	Batch         int64         // entries per read (default 50)
	Block         time.Duration // how long one read waits (default 1s)
	ClaimIdle     time.Duration // idle time after which entries are claimed (default 30s)
	MaxDeliveries int64         // deliveries before an entry is dead (default 5)
	MaxBackoff    time.Duration // cap of the wait while Redis is away (default 5s)
	Logger        *slog.Logger
}

// Consumer reads streams through a consumer group.
type Consumer struct {
	store   *Store
	cfg     ConsumerConfig
	counts  counters
	running atomic.Bool
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
	def(&cfg.MaxBackoff, 5*time.Second)
	if cfg.Batch <= 0 {
		cfg.Batch = 50
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer{store: s, cfg: cfg}, nil
}

// Running reports whether the consumer is connected and reading.
func (c *Consumer) Running() bool { return c.running.Load() }

// Run consumes until ctx is done. A stop lets the handler in flight finish and
// acks what was handled. While Redis is away it retries with a capped backoff.
func (c *Consumer) Run(ctx context.Context) error {
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
			return nil
		}
		c.cfg.Logger.Warn("consumer interrupted", "group", c.cfg.Group, "consumer", c.cfg.Name, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// session runs until an error: it makes sure the groups exist, handles its own
// pending entries, then reads new ones and claims idle ones.
func (c *Consumer) session(ctx context.Context) error {
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
		if err := c.read(ctx, ">", min(c.cfg.Block, c.claimEvery())); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

func (c *Consumer) claimEvery() time.Duration { return max(c.cfg.ClaimIdle/2, 10*time.Millisecond) }

// createGroups creates every missing group at the start of its stream.
func (c *Consumer) createGroups(ctx context.Context) error {
	for _, s := range c.cfg.Streams {
		err := c.store.rdb.XGroupCreateMkStream(ctx, c.store.StreamKey(s), c.cfg.Group, "0").Err()
		if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("create group %s on %s: %w", c.cfg.Group, s, err)
		}
	}
	return nil
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
			c.handle(ctx, s, msgs[0].Messages)
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
		c.handle(ctx, c.streamOf(r.Stream, i), r.Messages)
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

// handle runs the handler on each entry in order and acks the ones that
// succeeded in one call. A stop between entries leaves the rest pending for
// the next start. Handlers and acks run without the stop's cancellation.
func (c *Consumer) handle(ctx context.Context, stream string, msgs []redis.XMessage) {
	work := context.WithoutCancel(ctx)
	var done []string
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		c.counts.consumed.Add(1)
		e, err := decode(m.ID, m.Values)
		if err == nil {
			err = c.cfg.Handler(work, e)
		}
		if err == nil {
			c.counts.succeeded.Add(1)
			done = append(done, m.ID)
			continue
		}
		c.counts.failed.Add(1) // the router's Logging middleware says why
		c.failed(work, stream, m, err)
	}
	if len(done) > 0 {
		if err := c.store.rdb.XAck(work, c.store.StreamKey(stream), c.cfg.Group, done...).Err(); err != nil {
			// Not acked means delivered again: handlers are idempotent.
			c.cfg.Logger.Warn("ack failed", "group", c.cfg.Group, "stream", stream, "err", err)
		}
	}
}
