package eventstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// MaxRuns is how many runs of a stream's appends may be in flight.
const MaxRuns = maxRuns

// Waiting is the number of appends to stream that wait for a run in
// flight, and the number of runs in flight.
func Waiting(s *Store, stream string) (n, running int) {
	return s.queue(stream).Waiting()
}

// MoveToDeadLetters is the consumer's last step for an entry that failed
// too often: it says whether it moved the entry.
func MoveToDeadLetters(c *Consumer, ctx context.Context, stream string, m redis.XMessage) (bool, error) {
	return c.moveToDeadLetters(ctx, stream, m, errors.New("poison"), 15)
}

// Moved is the error an append or ReadGroup with WithReplicas answers for
// err, the reply of the node it asked.
func Moved(s *Store, err error) error { return s.moved(err) }
