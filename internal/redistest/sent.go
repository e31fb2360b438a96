package redistest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Sent is a client hook (AddHook) that counts the round trips of the work
// done in contexts that Counted made, and no other: the pipelines, and the
// commands sent on their own. A new connection's HELLO counts as one of
// those, so a test warms the connections up first.
type Sent struct{ Pipelines, Commands atomic.Int64 }

type countedKey struct{}

// Counted is ctx with what is sent in it counted.
func (s *Sent) Counted(ctx context.Context) context.Context {
	return context.WithValue(ctx, countedKey{}, s)
}

// Reset counts from zero again.
func (s *Sent) Reset() {
	s.Pipelines.Store(0)
	s.Commands.Store(0)
}

func (*Sent) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *Sent) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(countedKey{}) == s {
			s.Commands.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (s *Sent) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(countedKey{}) == s {
			s.Pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}
