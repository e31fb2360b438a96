package eventstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Read returns up to count events after the stream ID from ("0" or "" for
// the start) and the ID to read the next page from.
func (s *Store) Read(ctx context.Context, stream, from string, count int64) ([]Event, string, error) {
	start := "-"
	if from != "" && from != "0" {
		start = "(" + from
	}
	msgs, err := s.rdb.XRangeN(ctx, s.StreamKey(stream), start, "+", count).Result()
	if err != nil {
		return nil, from, err
	}
	events, err := decodeAll(msgs)
	if len(msgs) > 0 {
		from = msgs[len(msgs)-1].ID
	}
	return events, from, err
}

// Replay calls fn with the events of a stream after from, in order, a page
// at a time.
func (s *Store) Replay(ctx context.Context, stream, from string, fn func([]Event) error) error {
	const page = 500
	for {
		events, next, err := s.Read(ctx, stream, from, page)
		if err != nil {
			return err
		}
		if err := fn(events); err != nil {
			return err
		}
		if len(events) < page {
			return nil
		}
		from = next
	}
}

func decodeAll(msgs []redis.XMessage) ([]Event, error) {
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := decode(m.ID, m.Values)
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}
