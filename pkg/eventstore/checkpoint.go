package eventstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// A group remembers what it has read, but Redis may lose it (a restore from
// an old snapshot, a failover to a replica that never saw it, an operator's
// XGROUP DESTROY). Created again at the stream's start, it would hand every
// consumer all history again. So each group keeps a checkpoint beside the
// stream, in the stream's hash slot: a stream ID up to which every entry is
// handled or dead-lettered. A lost group is created again from it.
//
//	{customer}:checkpoints    hash: group -> stream ID

// CheckpointKey is the hash of the checkpoints of a stream's groups.
func (s *Store) CheckpointKey(stream string) string { return s.Key(stream, "checkpoints") }

// checkpointScript advances the group's checkpoint to a batch's last ID
// when no entry up to it stays pending in the group: entries up to it were
// all delivered (a group delivers in order) and none is pending, so all are
// done. It runs after the batch's XACK, in the same pipeline: whatever ran
// between them, what it sees pending then is still undone. The checkpoint
// never goes back, also when replicas finish their batches out of order.
//
// KEYS: the stream, the checkpoints. ARGV: group, the batch's last ID.
//
//go:embed checkpoint.lua
var checkpointLua string

var checkpointScript = redis.NewScript(checkpointLua)

// The ack of a batch: XACK of its handled entries, then the checkpoint's
// advance up to last, the batch's end or how far it got. It is owed from the
// batch's end to the next round trip to Redis, which carries it: the next
// read or claim goes out in one pipeline with it, on keys of the stream's
// hash slot, so that a batch costs one round trip. The ack goes first, so
// that the read or claim sees it done.
type owedAck struct {
	stream, last string
	done         []string
}

// ack acks at once.
func (c *Consumer) ack(ctx context.Context, stream, last string, done []string) {
	c.sendAcks(ctx, []owedAck{{stream: stream, last: last, done: done}}, nil)
}

// withAcks sends the owed acks and then what send queues, in one pipeline.
// Then send must not block: a pipeline waits for its replies no longer than
// the client's read timeout. With no ack owed, send goes straight to Redis.
func (c *Consumer) withAcks(ctx context.Context, send func(redis.Cmdable)) {
	owed := c.owed
	c.owed = nil
	c.sendAcks(ctx, owed, send)
}

// flush sends the owed acks.
func (c *Consumer) flush(ctx context.Context) { c.withAcks(ctx, nil) }

// sendAcks sends acks and then what send queues (if send is not nil), in
// one pipeline; the acks without the stop's cancellation, which must not
// lose them.
func (c *Consumer) sendAcks(ctx context.Context, acks []owedAck, send func(redis.Cmdable)) {
	if len(acks) == 0 {
		if send != nil {
			send(c.store.rdb)
		}
		return
	}
	ctx = context.WithoutCancel(ctx)
	p := c.store.rdb.Pipeline()
	xacks, checkpoints := make([]*redis.IntCmd, len(acks)), make([]*redis.Cmd, len(acks))
	for i, a := range acks {
		if len(a.done) > 0 {
			xacks[i] = p.XAck(ctx, c.store.StreamKey(a.stream), c.cfg.Group, a.done...)
		}
		checkpoints[i] = checkpointScript.EvalSha(ctx, p, c.checkpointKeys(a), c.cfg.Group, a.last)
	}
	if send != nil {
		send(p)
	}
	_, _ = p.Exec(ctx) // each command has its own error
	for i, a := range acks {
		if xacks[i] != nil && xacks[i].Err() != nil {
			// Not acked means delivered again: handlers are idempotent.
			c.cfg.Logger.Warn("ack failed", "group", c.cfg.Group, "stream", a.stream, "err", xacks[i].Err())
			continue
		}
		err := checkpoints[i].Err()
		if redis.HasErrorPrefix(err, "NOSCRIPT") { // Redis lost its scripts: Run loads it
			err = checkpointScript.Run(ctx, c.store.rdb, c.checkpointKeys(a), c.cfg.Group, a.last).Err()
		}
		if err != nil {
			// The next batch's advances it.
			c.cfg.Logger.Warn("checkpoint failed", "group", c.cfg.Group, "stream", a.stream, "err", err)
		}
	}
}

func (c *Consumer) checkpointKeys(a owedAck) []string {
	return []string{c.store.StreamKey(a.stream), c.store.CheckpointKey(a.stream)}
}

// createGroups creates every missing group: at the stream's start the first
// time, from its checkpoint when the group was lost. It adds the consumer to
// each, so that the group lists it from its start (Redis 7.0 would only once
// it was handed an entry), marked seen first: one that comes back after a
// while keeps the idle time it left with.
func (c *Consumer) createGroups(ctx context.Context) error {
	for _, s := range c.cfg.Streams {
		cp, err := c.store.rdb.HGet(ctx, c.store.CheckpointKey(s), c.cfg.Group).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		from := "0"
		if cp != "" {
			from = cp
		}
		err = c.store.rdb.XGroupCreateMkStream(ctx, c.store.StreamKey(s), c.cfg.Group, from).Err()
		switch {
		case redis.HasErrorPrefix(err, "BUSYGROUP"):
		case err != nil:
			return fmt.Errorf("create group %s on %s: %w", c.cfg.Group, s, err)
		case cp != "":
			c.cfg.Logger.Error("consumer group was lost and is created again from its checkpoint: entries after it are delivered again",
				"group", c.cfg.Group, "stream", s, "checkpoint", cp)
		}
		if err := c.removeGone(ctx, s); err != nil {
			return err
		}
		if err := c.store.rdb.XGroupCreateConsumer(ctx, c.store.StreamKey(s), c.cfg.Group, c.cfg.Name).Err(); err != nil {
			return err
		}
	}
	return nil
}
