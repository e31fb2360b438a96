package eventstore

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store appends to and reads from the event streams of one Redis.
type Store struct {
	rdb        redis.UniversalClient
	prefix     string
	partitions int // of each entity type's stream; 1 when not split
	meta       func(context.Context) map[string]string
	appended   func(streamKey string, n int)
	queues     sync.Map // stream name → its append queue (see queue)
	archive    Archive  // below the streams' starts, nil without one (UseArchive)
	// replicas that must have each append within replicaTimeout (WithReplicas)
	replicas       int
	replicaTimeout time.Duration
}

// Option configures a Store.
type Option func(*Store)

// WithMeta gives every appended event the metadata that meta reads from the
// command's context, e.g. its trace; an event's own Meta wins.
func WithMeta(meta func(context.Context) map[string]string) Option {
	return func(s *Store) { s.meta = meta }
}

// WithAppended has the store call appended after each append with the
// stream's key and the number of events appended, e.g. to count them. A
// repeated append, which writes nothing, is reported again.
func WithAppended(appended func(streamKey string, n int)) Option {
	return func(s *Store) { s.appended = appended }
}

// New returns a store. The prefix goes in front of every key; it is empty in
// production and lets tests share one Redis without seeing each other.
func New(rdb redis.UniversalClient, prefix string, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: prefix}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Redis is the client the store uses.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// Key names a key in the hash slot of a stream: Key("order", "versions") is
// "{order}:versions".
func (s *Store) Key(stream, name string) string {
	return s.prefix + "{" + stream + "}:" + name
}

// StreamKey is the key of a stream: "events:{order}".
func (s *Store) StreamKey(stream string) string {
	return s.prefix + "events:{" + stream + "}"
}

// Version is the latest version of an entity in its stream, 0 if it has none.
func (s *Store) Version(ctx context.Context, stream, entityID string) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.Key(stream, "versions"), entityID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}
