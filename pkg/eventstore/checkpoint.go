package eventstore

import (
	"context"
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

// ackScript acks the handled entries of a batch and advances the group's
// checkpoint to the batch's last ID when no entry up to it stays pending in
// the group: entries up to it were all delivered (a group delivers in order)
// and none is pending, so all are done. The checkpoint never goes back, also
// when replicas finish their batches out of order.
//
// KEYS: the stream, the checkpoints. ARGV: group, the batch's last ID, IDs to ack...
var ackScript = redis.NewScript(`
local function after(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
if #ARGV > 2 then redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3)) end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
if p[1] > 0 and not after(p[2], ARGV[2]) then return 0 end
local cp = redis.call('HGET', KEYS[2], ARGV[1])
if cp and not after(ARGV[2], cp) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`)

// ack acks the handled entries of a batch and advances the checkpoint up to
// last, the batch's end or how far it got.
func (c *Consumer) ack(ctx context.Context, stream, last string, done []string) {
	args := []any{c.cfg.Group, last}
	for _, id := range done {
		args = append(args, id)
	}
	keys := []string{c.store.StreamKey(stream), c.store.CheckpointKey(stream)}
	if err := ackScript.Run(ctx, c.store.rdb, keys, args...).Err(); err != nil {
		// Not acked means delivered again: handlers are idempotent.
		c.cfg.Logger.Warn("ack failed", "group", c.cfg.Group, "stream", stream, "err", err)
	}
}

// createGroups creates every missing group: at the stream's start the first
// time, from its checkpoint when the group was lost.
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
	}
	return nil
}
