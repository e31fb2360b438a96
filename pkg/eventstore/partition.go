package eventstore

import (
	"context"
	"hash/fnv"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
)

// An entity type's events may be spread over several streams, its
// partitions, so that one type is not bound to the one Redis Cluster node
// that serves its hash slot. With n partitions (WithPartitions) the type
// "order" has the streams "order:0" … "order:n-1", each with its own hash
// tag ({order:0}); an entity lives in the partition its id hashes to, with
// its cache and version keys, so each entity keeps one total order. With one
// partition, the default, the stream is the type's name itself ("order"),
// the layout of a store without partitions.

// WithPartitions splits each entity type's stream into n partitions.
func WithPartitions(n int) Option {
	return func(s *Store) { s.partitions = max(n, 1) }
}

// Partitions are the streams of an entity type, all its partitions.
func (s *Store) Partitions(typ string) []string {
	if s.partitions <= 1 {
		return []string{typ}
	}
	out := make([]string, s.partitions)
	for i := range out {
		out[i] = typ + ":" + strconv.Itoa(i)
	}
	return out
}

// PartitionOf is the stream of an entity type that holds the entity with an
// id: the partition FNV-1a of the id picks.
func (s *Store) PartitionOf(typ, id string) string {
	if s.partitions <= 1 {
		return typ
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return typ + ":" + strconv.Itoa(int(h.Sum32()%uint32(s.partitions)))
}

// FirstPartition is the stream of an entity type that holds its entities
// that must change together in one commit (see entitycache.Kind.OnePartition).
func (s *Store) FirstPartition(typ string) string { return s.Partitions(typ)[0] }

// Scan lists the keys that match a pattern, on every master of a cluster.
func (s *Store) Scan(ctx context.Context, pattern string) ([]string, error) {
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
		return keys, err
	}
	return keys, scan(ctx, s.rdb)
}
