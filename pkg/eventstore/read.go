package eventstore

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// Read returns the events among up to count entries after the stream ID from
// ("0" or "" for the start) and the ID to read the next page from. Entries
// that are not events are skipped.
func (s *Store) Read(ctx context.Context, stream, from string, count int64) ([]Event, string, error) {
	start := "-"
	if from != "" && from != "0" {
		start = "(" + from
	}
	msgs, err := s.rdb.XRangeN(ctx, s.StreamKey(stream), start, "+", count).Result()
	if err != nil {
		return nil, from, err
	}
	if len(msgs) > 0 {
		from = msgs[len(msgs)-1].ID
	}
	return DecodeEntries(stream, msgs), from, nil
}

// Replay calls fn with the events of a stream after from, in order, a page
// at a time, until a page is empty.
func (s *Store) Replay(ctx context.Context, stream, from string, fn func([]Event) error) error {
	const page = 500
	for {
		events, next, err := s.Read(ctx, stream, from, page)
		if err != nil || next == from {
			return err
		}
		if err := fn(events); err != nil {
			return err
		}
		countReplayed(ctx, len(events))
		from = next
	}
}

// ReplayAll is Replay from the start of every partition of an entity type's
// stream, one after the other: each entity's events in order, those of
// entities in different partitions in no order between them.
func (s *Store) ReplayAll(ctx context.Context, typ string, fn func([]Event) error) error {
	for _, part := range s.Partitions(typ) {
		if err := s.Replay(ctx, part, "0", fn); err != nil {
			return err
		}
	}
	return nil
}

// DecodeEntries decodes the events among the entries msgs of a stream (an
// XRANGE's or XREADGROUP's). An entry that is not one, say an
// XADD by hand, is logged and skipped: stopping at it would stop every
// replay, and so every rebuild, there for good.
func DecodeEntries(stream string, msgs []redis.XMessage) []Event {
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := decode(m.ID, m.Values)
		if err != nil {
			slog.Warn("eventstore: skipped an entry that is not an event", "stream", stream, "id", m.ID, "err", err)
			continue
		}
		out = append(out, e)
	}
	return out
}
