package eventstore

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// claimIdle takes over the entries of the group that stayed unacked longer
// than ClaimIdle, from consumers that are gone, and handles them; then it
// removes those consumers from the group once they hold nothing. On Redis 7
// XAUTOCLAIM itself drops entries deleted from the stream from the pending
// list.
func (c *Consumer) claimIdle(ctx context.Context) error {
	for _, s := range c.cfg.Streams {
		key := c.store.StreamKey(s)
		for start := "0-0"; ctx.Err() == nil; {
			var claim *redis.XAutoClaimCmd
			c.withAcks(ctx, func(r redis.Cmdable) {
				claim = r.XAutoClaim(ctx, &redis.XAutoClaimArgs{
					Stream: key, Group: c.cfg.Group, Consumer: c.cfg.Name,
					MinIdle: c.cfg.ClaimIdle, Start: start, Count: c.cfg.Batch,
				})
			})
			msgs, next, err := claim.Result()
			if err != nil {
				return err
			}
			c.counts.recovered.Add(int64(len(msgs)))
			c.handle(ctx, s, msgs, true)
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
		if err := c.removeGone(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// A consumer that is gone must be told from one that waits on a quiet
// stream. The idle time Redis reports does not tell them apart everywhere:
// on Redis 7.0 a read that finds nothing does not reset it, so live replicas
// of a quiet stream would remove each other. So each consumer marks itself
// seen, in Redis's time, at each claim pass (every ClaimIdle/2), in a sorted
// set of its group in the stream's hash slot; a consumer is gone when
// neither its idle time nor its mark is younger than 2×ClaimIdle.
//
//	{customer}:seen:crm    sorted set: consumer -> when it was last seen (ms)

// SeenKey is the sorted set of when a group's consumers were last seen.
func (s *Store) SeenKey(stream, group string) string { return s.Key(stream, "seen:"+group) }

// removeGoneScript marks this consumer seen and removes the consumers of the
// group, other than this one, that hold nothing pending and were neither
// idle nor seen within a limit, atomically with the look at them: a consumer
// that reads meanwhile keeps its entries. Marks older than the limit go.
//
// KEYS: the stream, its seen marks. ARGV: group, this consumer, limit in ms.
//
//go:embed removegone.lua
var removeGoneLua string

var removeGoneScript = redis.NewScript(removeGoneLua)

// removeGone marks this consumer seen and removes the consumers that are
// gone: each replica has a name of its own, so without this the group would
// list every replica that ever ran. 2×ClaimIdle is long past what a live
// consumer, which marks itself every ClaimIdle/2, ever shows.
func (c *Consumer) removeGone(ctx context.Context, stream string) error {
	limit := (2 * c.cfg.ClaimIdle).Milliseconds()
	keys := []string{c.store.StreamKey(stream), c.store.SeenKey(stream, c.cfg.Group)}
	removed, err := removeGoneScript.Run(ctx, c.store.rdb, keys, c.cfg.Group, c.cfg.Name, limit).StringSlice()
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		c.cfg.Logger.Info("removed consumers that are gone", "group", c.cfg.Group, "stream", stream, "consumers", removed)
	}
	return nil
}

// deliverable answers the recovered entries (re-read or claimed) that may go
// to the handler. One delivered more than MaxDeliveries times, this delivery
// included, had no outcome the times before: the handler may have crashed the
// process on it each time. It is dead-lettered without calling the handler.
// Entries another consumer took meanwhile are left to it.
func (c *Consumer) deliverable(ctx context.Context, stream string, msgs []redis.XMessage) []redis.XMessage {
	key := c.store.StreamKey(stream)
	counts := make([]*redis.XPendingExtCmd, len(msgs))
	_, err := c.store.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			counts[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{
				Stream: key, Group: c.cfg.Group, Start: m.ID, End: m.ID, Count: 1, Consumer: c.cfg.Name,
			})
		}
		return nil
	})
	if err != nil {
		return nil // they stay pending; the next re-read or claim looks again
	}
	var ok []redis.XMessage
	for i, m := range msgs {
		p := counts[i].Val()
		switch {
		case len(p) == 0:
		case p[0].RetryCount > c.cfg.MaxDeliveries:
			c.cfg.Logger.Error("entry delivered too often without an outcome, dead-lettered unhandled",
				"group", c.cfg.Group, "stream", stream, "id", m.ID, "deliveries", p[0].RetryCount)
			c.deadLetter(ctx, stream, m, fmt.Errorf("delivered %d times without an outcome: the handler may crash the process on it", p[0].RetryCount-1), p[0].RetryCount)
		default:
			ok = append(ok, m)
		}
	}
	return ok
}

// failed decides what happens to an entry whose handling failed: it stays
// pending and is delivered again after its retry delay, or, once delivered
// MaxDeliveries times, it goes to the dead-letter stream.
func (c *Consumer) failed(ctx context.Context, stream string, m redis.XMessage, cause error) {
	p, err := c.store.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: c.store.StreamKey(stream), Group: c.cfg.Group, Start: m.ID, End: m.ID, Count: 1, Consumer: c.cfg.Name,
	}).Result()
	if err != nil || len(p) == 0 {
		return // another consumer has it, or Redis is away: the next re-read or claim looks again
	}
	if n := p[0].RetryCount; n < c.cfg.MaxDeliveries {
		c.retryLater(stream, m.ID, n)
		return
	}
	c.deadLetter(ctx, stream, m, cause, p[0].RetryCount)
}

func (c *Consumer) deadLetter(ctx context.Context, stream string, m redis.XMessage, cause error, deliveries int64) {
	moved, err := c.moveToDeadLetters(ctx, stream, m, cause, deliveries)
	if err != nil {
		c.cfg.Logger.Warn("dead-letter failed", "group", c.cfg.Group, "stream", stream, "id", m.ID, "err", err)
	}
	if !moved {
		return // it stays pending, perhaps another consumer's now
	}
	c.counts.deadLettered.Add(1)
	if c.cfg.OnDeadLetter != nil {
		c.cfg.OnDeadLetter(c.store.StreamKey(stream))
	}
}
