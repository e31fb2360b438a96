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
// node. Nor does it follow redirects: while the slot moves, or once a
// failover gave it to the old master's replica, an append fails with
// ErrSlotMoved (MOVED or ASK), before it writes anything, and has the
// cluster client reload its slot map for the next.

// ErrNotReplicated is the error of an append that was written on the
// primary, but not confirmed by enough replicas within the timeout of
// WithReplicas. The events are there: an append of the same events again
// (a retry with the same idempotency key) writes nothing and answers what
// the first did (see idempotency.go).
var ErrNotReplicated = errors.New("eventstore: written on the primary, not confirmed by enough replicas in time")

// ErrSlotMoved is the error of an append, or of a ReadGroup, with
// WithReplicas on Redis Cluster, sent to a node that no longer serves the
// stream's hash slot (it answered MOVED or ASK: a failover promoted its
// replica, or the slot is moving): nothing was run, so it is safe to try
// again, once the cluster client has reloaded its slot map.
var ErrSlotMoved = errors.New("eventstore: the stream's hash slot is on another Redis node now; nothing was written")

// WithReplicas has each append wait until n replicas have it, for at most
// timeout, and fail with ErrNotReplicated if fewer did. With n 0, the
// default, an append waits for none and sends no WAIT. The timeout must be
// below the client's read timeout, which covers the round trip of the
// script and the WAIT together; under a millisecond it is one (WAIT's 0
// would wait for ever).
func WithReplicas(n int, timeout time.Duration) Option {
	return func(s *Store) { s.replicas, s.replicaTimeout = n, max(timeout, time.Millisecond) }
}

// evalAppend runs the append script with args, with WithReplicas followed
// by a WAIT, and returns the script's reply. An error that wraps
// ErrNotReplicated comes with the reply: what the script wrote is on the
// primary.
func (s *Store) evalAppend(ctx context.Context, a appendArgs) ([]any, error) {
	if s.replicas == 0 {
		return appendScript.Run(ctx, s.rdb, a.keys, a.argv...).Slice()
	}
	rdb, err := s.master(ctx, a.keys[0])
	if err != nil {
		return nil, err
	}
	// EVALSHA, and EVAL (which loads the script) when Redis does not know
	// it: the WAIT sent with the EVALSHA then waited for nothing of this
	// append, and goes again with the EVAL.
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
			return nil, s.moved(err)
		}
		return out, s.replicated(wait)
	}
	return nil, errors.New("eventstore: Redis does not know the append script it was just sent")
}

// master is the client of the Redis that holds key: on a cluster, the
// master of its hash slot.
func (s *Store) master(ctx context.Context, key string) (redis.UniversalClient, error) {
	if cluster, ok := s.rdb.(*redis.ClusterClient); ok {
		return cluster.MasterForKey(ctx, key)
	}
	return s.rdb, nil
}

// moved is err, as ErrSlotMoved if it is a redirection, which has the
// cluster client reload its slot map: it does not on its own when a node
// is asked directly (MasterForKey).
func (s *Store) moved(err error) error {
	_, moved := redis.IsMovedError(err)
	_, ask := redis.IsAskError(err)
	if !moved && !ask {
		return err
	}
	if cluster, ok := s.rdb.(*redis.ClusterClient); ok {
		cluster.ReloadState(context.Background())
	}
	return fmt.Errorf("%w: %w", ErrSlotMoved, err)
}

// replicated is the error of a WAIT that enough replicas did not answer,
// nil if they did.
func (s *Store) replicated(wait *redis.Cmd) error {
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("%w: WAIT: %w", ErrNotReplicated, err)
	}
	if n < int64(s.replicas) {
		return fmt.Errorf("%w: %d of %d replicas within %v", ErrNotReplicated, n, s.replicas, s.replicaTimeout)
	}
	return nil
}

// marked reads the marker at key, and with WithReplicas, when it is there,
// waits for the replicas too: the marker of a first try that no replica
// confirmed must not make its retry a success while they still do not.
// That WAIT is for its connection's last write, which may be older than
// the first try's: it tells that enough replicas are there and had caught
// up to then.
func (s *Store) marked(ctx context.Context, key string) (bool, error) {
	// GET, not EXISTS: the owners' Redis users read their markers with GET.
	err := s.rdb.Get(ctx, key).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil || s.replicas == 0 {
		return err == nil, err
	}
	rdb, err := s.master(ctx, key)
	if err != nil {
		return false, err
	}
	return true, s.replicated(rdb.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds()))
}

// ReadGroup is XREADGROUP and, with WithReplicas, a WAIT on the same
// connection after it, in one round trip: the entries it returns are then
// on enough replicas, so none of them is one that only a primary cut off
// from its replicas took (answered ErrNotReplicated) and that a failover
// will roll back. What outlives Redis, the archive, reads through it. Not
// confirmed in time, the entries are delivered (pending) and the error
// wraps ErrNotReplicated: read them again, from the group's pending ones.
func (s *Store) ReadGroup(ctx context.Context, args *redis.XReadGroupArgs) ([]redis.XStream, error) {
	if s.replicas == 0 {
		return s.rdb.XReadGroup(ctx, args).Result()
	}
	rdb, err := s.master(ctx, args.Streams[0])
	if err != nil {
		return nil, err
	}
	pipe := rdb.Pipeline()
	res := pipe.XReadGroup(ctx, args)
	wait := pipe.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds())
	pipe.Exec(ctx) // each command keeps its own error
	streams, err := res.Result()
	if err != nil {
		return nil, s.moved(err)
	}
	return streams, s.replicated(wait)
}
