package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// An append is acknowledged once Redis has run its script: on the primary
// alone, which may fail over to a replica that has not had it yet, and the
// event is lost. WithReplicas has every script run followed by WAIT on the
// same connection, in the same round trip, so that an append returns only
// once enough replicas have it. WAIT waits for what its own connection
// wrote, so it cannot go elsewhere: on Redis Cluster both go, in one
// pipeline, to the master of the stream's hash slot (MasterForKey), not
// through the cluster client, which routes a command without key to any
// node.

// ErrNotReplicated is the error of an append that was written on the
// primary, but not confirmed by enough replicas within the timeout of
// WithReplicas. The events are there: an append of the same events again
// (a retry with the same idempotency key) writes nothing and answers what
// the first did (see idempotency.go).
var ErrNotReplicated = errors.New("eventstore: written on the primary, not confirmed by enough replicas in time")

// WithReplicas has each append wait until n replicas have it, for at most
// timeout, and fail with ErrNotReplicated if fewer did. With n 0, the
// default, an append waits for none and sends no WAIT. The timeout must be
// below the client's read timeout, which covers the round trip of the
// script and the WAIT together.
func WithReplicas(n int, timeout time.Duration) Option {
	return func(s *Store) { s.replicas, s.replicaTimeout = n, timeout }
}

// evalAppend runs the append script with args, with WithReplicas followed
// by a WAIT, and returns the script's reply. An error that wraps
// ErrNotReplicated comes with the reply: what the script wrote is on the
// primary.
func (s *Store) evalAppend(ctx context.Context, a appendArgs) ([]any, error) {
	if s.replicas == 0 {
		return appendScript.Run(ctx, s.rdb, a.keys, a.argv...).Slice()
	}
	var rdb redis.Cmdable = s.rdb
	if cluster, ok := s.rdb.(*redis.ClusterClient); ok {
		master, err := cluster.MasterForKey(ctx, a.keys[0])
		if err != nil {
			return nil, err
		}
		rdb = master
	}
	// EVALSHA, and EVAL (which loads the script) when Redis does not know it.
	for _, eval := range []func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd{appendScript.EvalSha, appendScript.Eval} {
		pipe := rdb.Pipeline()
		res := eval(ctx, pipe, a.keys, a.argv...)
		wait := pipe.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds())
		pipe.Exec(ctx) // each command keeps its own error
		if redis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
			continue
		}
		out, err := res.Slice()
		if err != nil {
			return nil, err
		}
		n, err := wait.Int64()
		if err != nil {
			return out, fmt.Errorf("%w: WAIT: %w", ErrNotReplicated, err)
		}
		if n < int64(s.replicas) {
			return out, fmt.Errorf("%w: %d of %d replicas within %v", ErrNotReplicated, n, s.replicas, s.replicaTimeout)
		}
		return out, nil
	}
	return nil, errors.New("eventstore: Redis does not know the append script it was just sent")
}
