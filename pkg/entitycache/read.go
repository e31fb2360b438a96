package entitycache

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Get returns an entity and its version. For an entity that does not exist
// it returns nil, and the version of its deletion or 0 if it never existed:
// the version a create must expect. One round trip.
func (c *Cache) Get(ctx context.Context, k Kind, id string) (Entity, int64, error) {
	var read func() Entity
	var version *redis.StringCmd
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		read = c.queue(ctx, p, k, id)
		version = p.HGet(ctx, c.versionsKey(k), id)
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, 0, err
	}
	v, _ := strconv.ParseInt(version.Val(), 10, 64)
	return read(), v, nil
}

// List returns every entity of a kind, sorted by id. Two round trips,
// whatever the number of entities.
func (c *Cache) List(ctx context.Context, k Kind) ([]Entity, error) {
	ids, err := c.store.Redis().SMembers(ctx, c.idsKey(k)).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	reads := make([]func() Entity, len(ids))
	_, err = c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			reads[i] = c.queue(ctx, p, k, id)
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, err
	}
	out := make([]Entity, 0, len(ids))
	for _, read := range reads {
		if e := read(); e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// queue queues the reads of one entity on a pipeline and returns the function
// that builds the entity once the pipeline ran (nil if it does not exist).
func (c *Cache) queue(ctx context.Context, p redis.Pipeliner, k Kind, id string) func() Entity {
	key := c.entityKey(k, id)
	hash := p.HGetAll(ctx, key)
	lists := make([]*redis.StringSliceCmd, len(k.Lists))
	for i, f := range k.Lists {
		lists[i] = p.LRange(ctx, key+":"+f, 0, -1)
	}
	return func() Entity {
		if len(hash.Val()) == 0 {
			return nil
		}
		e := Entity{}
		for f, v := range hash.Val() {
			switch {
			case slices.Contains(k.Numbers, f):
				e[f] = json.Number(v)
			case slices.Contains(k.Bools, f):
				e[f] = v == "true"
			default:
				e[f] = v
			}
		}
		for i, f := range k.Lists {
			items := make([]any, len(lists[i].Val()))
			for j, v := range lists[i].Val() {
				items[j] = v
			}
			e[f] = items
		}
		return e
	}
}
