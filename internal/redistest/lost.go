package redistest

import (
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// LostAnswer is a client hook (AddHook) that loses the answer of a command
// once armed: the next command of the armed name runs on Redis, and its
// caller gets a read timeout instead of the reply, as when the network or a
// stalled Redis holds the answer past the client's deadline.
type LostAnswer struct{ armed atomic.Pointer[string] }

// Arm loses the answer of the next command named cmd ("evalsha": an
// append).
func (l *LostAnswer) Arm(cmd string) { l.armed.Store(&cmd) }

func (*LostAnswer) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *LostAnswer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := l.armed.Load(); name != nil && strings.EqualFold(cmd.Name(), *name) && l.armed.CompareAndSwap(name, nil) {
			err = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
			cmd.SetErr(err)
		}
		return err
	}
}

func (*LostAnswer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
