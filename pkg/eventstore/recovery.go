package eventstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// claimIdle takes over the entries of the group that stayed unacked longer
// than ClaimIdle, from dead consumers or from this one after a failure, and
// handles them. Entries deleted from the stream meanwhile are acked.
func (c *Consumer) claimIdle(ctx context.Context) error {
	for _, s := range c.cfg.Streams {
		key := c.store.StreamKey(s)
		for start := "0-0"; ctx.Err() == nil; {
			msgs, next, deleted, err := c.store.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
				Stream: key, Group: c.cfg.Group, Consumer: c.cfg.Name,
				MinIdle: c.cfg.ClaimIdle, Start: start, Count: c.cfg.Batch,
			}).Result()
			if err != nil {
				return err
			}
			if len(deleted) > 0 {
				if err := c.store.rdb.XAck(ctx, key, c.cfg.Group, deleted...).Err(); err != nil {
					return err
				}
			}
			c.counts.recovered.Add(int64(len(msgs)))
			c.handle(ctx, s, msgs)
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
	}
	return nil
}

// failed decides what happens to an entry whose handling failed: it stays
// pending to be claimed again, or, once delivered MaxDeliveries times, it
// goes to the dead-letter stream.
func (c *Consumer) failed(ctx context.Context, stream string, m redis.XMessage, cause error) {
	key := c.store.StreamKey(stream)
	p, err := c.store.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: key, Group: c.cfg.Group, Start: m.ID, End: m.ID, Count: 1,
	}).Result()
	if err != nil || len(p) == 0 {
		return // stays pending; the next claim looks again
	}
	if p[0].RetryCount < c.cfg.MaxDeliveries {
		return
	}
	if err := c.deadLetter(ctx, stream, m, cause, p[0].RetryCount); err != nil {
		c.cfg.Logger.Warn("dead-letter failed", "group", c.cfg.Group, "stream", stream, "id", m.ID, "err", err)
		return
	}
	c.counts.deadLettered.Add(1)
}
