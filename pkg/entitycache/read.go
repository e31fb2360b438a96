package entitycache

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Get returns an entity and its version. For an entity that does not exist
// it returns nil, and the version of its deletion or 0 if it never existed:
// the version a create must expect. One round trip.
func (k Kind[T]) Get(ctx context.Context, c *Cache, id string) (*T, int64, error) {
	ents, versions, err := k.GetMany(ctx, c, id)
	if err != nil {
		return nil, 0, err
	}
	return ents[0], versions[0], nil
}

// GetMany is Get of several entities in one round trip. A pipeline is not
// atomic: a commit may land between its reads. So the versions are read
// first: a version is never newer than the entity read with it, and a
// command deciding on an entity newer than its version conflicts and
// retries instead of overwriting a change it did not see.
func (k Kind[T]) GetMany(ctx context.Context, c *Cache, ids ...string) ([]*T, []int64, error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	kd := k.kind()
	versions := make([]*redis.StringCmd, len(ids))
	ents, err := k.read(ctx, c, ids, func(p redis.Pipeliner) {
		for i, id := range ids {
			versions[i] = p.HGet(ctx, c.versionsKey(kd, c.part(kd, id)), id)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	vs := make([]int64, len(ids))
	for i := range ids {
		vs[i], _ = strconv.ParseInt(versions[i].Val(), 10, 64)
	}
	return ents, vs, nil
}

// Page asks for part of a list: at most Limit entities (all when 0), those
// whose ids sort after After (from the first when "").
type Page struct {
	After string
	Limit int
}

// List returns every entity of a kind, sorted by id. Two round trips,
// whatever the number of entities. It reads the set of ids, which a cache
// written before pages existed has too, so that whole lists answer as they
// did on such a Redis before -rebuild gave it the sorted ids pages read.
func (k Kind[T]) List(ctx context.Context, c *Cache) ([]T, error) {
	kd := k.kind()
	parts := c.parts(kd)
	sets := make([]*redis.StringSliceCmd, len(parts))
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, part := range parts {
			sets[i] = p.SMembers(ctx, c.idsKey(kd, part))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range sets {
		ids = append(ids, s.Val()...)
	}
	slices.Sort(ids)
	ents, err := k.read(ctx, c, ids, nil)
	return present(ents), err
}

// ListPage returns a page of a kind's entities, sorted by id, and the After
// of the next page: "" when this one is the last. Two round trips, which
// read the page's entities and no others.
func (k Kind[T]) ListPage(ctx context.Context, c *Cache, p Page) ([]T, string, error) {
	kd := k.kind()
	return k.listIn(ctx, c, func(part string) string { return c.sortedIDsKey(kd, part) }, p)
}

// ListBy is ListPage of the entities whose Index field holds value.
func (k Kind[T]) ListBy(ctx context.Context, c *Cache, value string, p Page) ([]T, string, error) {
	if k.Index == "" {
		panic("entitycache: ListBy of " + k.Name + ", which has no Index")
	}
	kd := k.kind()
	return k.listIn(ctx, c, func(part string) string { return c.indexKey(kd, part, value) }, p)
}

// listIn lists a page of the ids in a sorted set of each part, read by
// range: all scores are 0, so a set is in id order and an id past After is
// found in O(log n). Each part gives its first Limit ids past After, in one
// round trip; the page is the first Limit of them all.
func (k Kind[T]) listIn(ctx context.Context, c *Cache, key func(part string) string, p Page) ([]T, string, error) {
	from := "-"
	if p.After != "" {
		from = "(" + p.After
	}
	parts := c.parts(k.kind())
	ranges := make([]*redis.StringSliceCmd, len(parts))
	_, err := c.store.Redis().Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, part := range parts {
			ranges[i] = pl.ZRangeByLex(ctx, key(part), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(p.Limit)})
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	var ids []string
	for _, r := range ranges {
		ids = append(ids, r.Val()...)
	}
	slices.Sort(ids)
	if p.Limit > 0 && len(ids) > p.Limit {
		ids = ids[:p.Limit]
	}
	ents, err := k.read(ctx, c, ids, nil)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if p.Limit > 0 && len(ids) == p.Limit {
		next = ids[len(ids)-1]
	}
	return present(ents), next, nil
}

// present are the entities that exist, of those read.
func present[T any](ents []*T) []T {
	out := make([]T, 0, len(ents))
	for _, e := range ents {
		if e != nil {
			out = append(out, *e)
		}
	}
	return out
}

// read reads entities in one pipeline, after whatever reads first queues;
// an entity that does not exist is nil.
func (k Kind[T]) read(ctx context.Context, c *Cache, ids []string, first func(redis.Pipeliner)) ([]*T, error) {
	kd := k.kind()
	hashes := make([]*redis.SliceCmd, len(ids))
	lists := make([][]*redis.StringSliceCmd, len(ids))
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		if first != nil {
			first(p)
		}
		for i, id := range ids {
			key := c.entityKey(kd, id)
			hashes[i] = p.HMGet(ctx, key, kd.codec.names...)
			for _, f := range kd.codec.lists {
				lists[i] = append(lists[i], p.LRange(ctx, key+":"+f.name, 0, -1))
			}
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, err
	}
	out := make([]*T, len(ids))
	items := make([][]string, len(kd.codec.lists))
	for i := range ids {
		for j, l := range lists[i] {
			items[j] = l.Val()
		}
		var ent T
		found, err := kd.codec.decode(reflect.ValueOf(&ent).Elem(), hashes[i].Val(), items)
		if err != nil {
			return nil, fmt.Errorf("cached %s %s: %w", k.Name, ids[i], err)
		}
		if found {
			out[i] = &ent
		}
	}
	return out, nil
}
