package eventstore

import (
	"context"
	_ "embed"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entries this consumer holds, the batches it works through or failed entries
// waiting for their retry, must not look idle to the claim passes of other
// replicas: the idle clock starts at the delivery, and an entry late in a
// slow batch would pass ClaimIdle before its turn and be handled twice. So
// the consumer claims them again for itself, JUSTID, which resets the idle
// clock without counting a delivery, every ClaimIdle/3.

// claimOwnScript claims again, for the consumer, those of the entries it
// still owns, and only those: an entry another consumer took meanwhile stays
// with it. With JUSTID it only resets their idle time and answers their ids;
// without, it delivers them again (a delivery that counts) and answers them.
//
// KEYS: the stream. ARGV: group, consumer, "JUSTID" or "", entry ids...
//
//go:embed claimown.lua
var claimOwnLua string

var claimOwnScript = redis.NewScript(claimOwnLua)

func (c *Consumer) keepEvery() time.Duration { return max(c.cfg.ClaimIdle/3, 5*time.Millisecond) }

func (c *Consumer) claimOwnArgs(mode string, ids []string) []any {
	args := []any{c.cfg.Group, c.cfg.Name, mode}
	for _, id := range ids {
		args = append(args, id)
	}
	return args
}

// keep resets the idle time of the entries this consumer still owns and
// answers which of them it does.
func (c *Consumer) keep(ctx context.Context, stream string, ids []string) (map[string]bool, error) {
	owned, err := claimOwnScript.Run(ctx, c.store.rdb, []string{c.store.StreamKey(stream)}, c.claimOwnArgs("JUSTID", ids)...).StringSlice()
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(owned))
	for _, id := range owned {
		set[id] = true
	}
	return set, nil
}

// keepBatch keeps the rest of a batch owned and answers the entries of it
// that another consumer took. When Redis does not answer it assumes none:
// the worst is a second delivery, which handlers tolerate.
func (c *Consumer) keepBatch(ctx context.Context, stream string, rest []redis.XMessage) map[string]bool {
	ids := make([]string, len(rest))
	for i, m := range rest {
		ids[i] = m.ID
	}
	owned, err := c.keep(ctx, stream, ids)
	if err != nil {
		c.cfg.Logger.Warn("keeping the batch owned failed", "group", c.cfg.Group, "stream", stream, "err", err)
		return nil
	}
	taken := map[string]bool{}
	for _, id := range ids {
		if !owned[id] {
			taken[id] = true
		}
	}
	return taken
}

// deliverOwn delivers again the entries this consumer still owns, as a
// retry: each counts as a delivery.
func (c *Consumer) deliverOwn(ctx context.Context, stream string, ids []string) ([]redis.XMessage, error) {
	// The script answers what XCLAIM answers: read it as XCLAIM's reply. It is
	// short enough to send as it is each time; retries are rare.
	args := append([]any{"eval", claimOwnLua, 1, c.store.StreamKey(stream)}, c.claimOwnArgs("", ids)...)
	cmd := redis.NewXMessageSliceCmd(ctx, args...)
	c.store.rdb.Process(ctx, cmd)
	return cmd.Result()
}
