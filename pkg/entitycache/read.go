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
	ents, versions, err := c.GetMany(ctx, k, id)
	if err != nil {
		return nil, 0, err
	}
	return ents[0], versions[0], nil
}

// GetMany is Get of several entities in one round trip.
func (c *Cache) GetMany(ctx context.Context, k Kind, ids ...string) ([]Entity, []int64, error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	reads := make([]func() Entity, len(ids))
	var versions *redis.SliceCmd
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			reads[i] = c.queue(ctx, p, k, id)
		}
		versions = p.HMGet(ctx, c.versionsKey(k), ids...)
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, nil, err
	}
	ents, vs := make([]Entity, len(ids)), make([]int64, len(ids))
	for i, read := range reads {
		ents[i] = read()
		s, _ := versions.Val()[i].(string)
		vs[i], _ = strconv.ParseInt(s, 10, 64)
	}
	return ents, vs, nil
}

// List returns every entity of a kind, sorted by id. Two round trips,
// whatever the number of entities.
func (c *Cache) List(ctx context.Context, k Kind) ([]Entity, error) {
	ids, err := c.store.Redis().SMembers(ctx, c.idsKey(k)).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	ents, _, err := c.GetMany(ctx, k, ids...)
	if err != nil {
		return nil, err
	}
	out := make([]Entity, 0, len(ents))
	for _, e := range ents {
		if e != nil {
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
