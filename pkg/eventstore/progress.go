package eventstore

import (
	"context"
	"sync/atomic"
)

type replayedKey struct{}

// CountingReplays is ctx with every event that Replay hands on from it
// counted in n, e.g. for the progress of a rebuild.
func CountingReplays(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, replayedKey{}, n)
}

func countReplayed(ctx context.Context, events int) {
	if n, ok := ctx.Value(replayedKey{}).(*atomic.Int64); ok {
		n.Add(int64(events))
	}
}
