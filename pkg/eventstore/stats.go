package eventstore

import (
	"context"
	"github.com/redis/go-redis/v9"
	"sync/atomic"
)

type counters struct {
	consumed, succeeded, failed, skipped, recovered, deadLettered, replayed, reconnections atomic.Int64
}

// Counters are what a consumer did since it started.
type Counters struct {
	Consumed      int64 `json:"events_consumed"`
	Succeeded     int64 `json:"events_succeeded"`
	Failed        int64 `json:"events_failed"`
	Skipped       int64 `json:"events_skipped"` // their handler said ErrSkip: acked, never retried
	Recovered     int64 `json:"events_recovered"`
	DeadLettered  int64 `json:"events_dead_lettered"`
	Replayed      int64 `json:"events_replayed"`
	Reconnections int64 `json:"reconnections"`
}

// StreamInfo is what an operator wants to know of a stream.
type StreamInfo struct {
	Stream  string `json:"stream"`
	Length  int64  `json:"length"`
	FirstID string `json:"first_id"`
	LastID  string `json:"last_id"`
	// Added is how many entries were ever appended (XINFO STREAM
	// entries-added): those not in Length were trimmed.
	Added  int64       `json:"added"`
	Groups []GroupInfo `json:"groups"`
}

// GroupInfo is one consumer group of a stream.
type GroupInfo struct {
	Name        string `json:"name"`
	Consumers   int64  `json:"consumers"`
	Pending     int64  `json:"pending"`
	Lag         int64  `json:"lag"` // entries yet to read; -1 when Redis cannot tell (after a group was created at an ID, or entries were deleted)
	DeadLetters int64  `json:"dead_letters"`
}

// ConsumerStats is a consumer's counters and its streams.
type ConsumerStats struct {
	Group    string       `json:"group"`
	Consumer string       `json:"consumer"`
	Running  bool         `json:"running"`
	Counters Counters     `json:"counters"`
	Streams  []StreamInfo `json:"streams"`
}

// Info reads a stream's length, first and last IDs, and its groups with their
// pending entries, lag and dead letters. A missing stream has length 0.
func (s *Store) Info(ctx context.Context, stream string) (StreamInfo, error) {
	key := s.StreamKey(stream)
	info := StreamInfo{Stream: key}
	x, err := s.rdb.XInfoStream(ctx, key).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "no such key") {
			return info, nil
		}
		return info, err
	}
	info.Length, info.FirstID, info.LastID, info.Added = x.Length, x.FirstEntry.ID, x.LastEntry.ID, x.EntriesAdded
	groups, err := s.rdb.XInfoGroups(ctx, key).Result()
	if err != nil {
		return info, err
	}
	for _, g := range groups {
		dl, err := s.rdb.XLen(ctx, s.DeadLetterKey(stream, g.Name)).Result()
		if err != nil {
			return info, err
		}
		info.Groups = append(info.Groups, GroupInfo{
			Name: g.Name, Consumers: g.Consumers, Pending: g.Pending, Lag: g.Lag, DeadLetters: dl,
		})
	}
	return info, nil
}

// Stats returns the consumer's counters and the facts of its streams.
func (c *Consumer) Stats(ctx context.Context) (ConsumerStats, error) {
	st := ConsumerStats{Group: c.cfg.Group, Consumer: c.cfg.Name, Running: c.Running(), Counters: Counters{
		Consumed: c.counts.consumed.Load(), Succeeded: c.counts.succeeded.Load(), Failed: c.counts.failed.Load(), Skipped: c.counts.skipped.Load(),
		Recovered: c.counts.recovered.Load(), DeadLettered: c.counts.deadLettered.Load(),
		Replayed: c.counts.replayed.Load(), Reconnections: c.counts.reconnections.Load(),
	}}
	for _, s := range c.cfg.Streams {
		info, err := c.store.Info(ctx, s)
		if err != nil {
			return st, err
		}
		st.Streams = append(st.Streams, info)
	}
	return st, nil
}
