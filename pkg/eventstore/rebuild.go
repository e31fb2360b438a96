package eventstore

import (
	"context"
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// raiseScript sets versions that are higher than the ones recorded: a
// version only ever rises, so a rebuild racing an append can't hand out a
// version twice.
//
//go:embed raise.lua
var raiseLua string

var raiseScript = redis.NewScript(raiseLua)

// RebuildVersions sets the latest version of every entity of a stream, which
// expected versions are checked against, from the stream itself: the stream
// is the source of truth, the versions hash a summary of it. It is safe while
// commands append: it only raises versions.
func (s *Store) RebuildVersions(ctx context.Context, stream string) error {
	key := s.Key(stream, "versions")
	return s.Replay(ctx, stream, "0", func(events []Event) error {
		latest := map[string]int64{}
		for _, e := range events {
			latest[e.EntityID] = e.Version
		}
		args := make([]any, 0, 2*len(latest))
		for id, v := range latest {
			args = append(args, id, v)
		}
		if len(args) == 0 {
			return nil
		}
		return raiseScript.Run(ctx, s.rdb, []string{key}, args...).Err()
	})
}
