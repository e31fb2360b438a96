package eventstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// RebuildVersions sets the latest version of every entity of a stream, which
// expected versions are checked against, from the stream itself: the stream
// is the source of truth, the versions hash a summary of it.
func (s *Store) RebuildVersions(ctx context.Context, stream string) error {
	key := s.Key(stream, "versions")
	latest := map[string]any{}
	err := s.Replay(ctx, stream, "0", func(events []Event) error {
		for _, e := range events {
			latest[e.EntityID] = e.Version
		}
		return nil
	})
	if err != nil || len(latest) == 0 {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, latest)
		return nil
	})
	return err
}
