package entitycache

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

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
	// One HMGET of the versions per partition that holds some of the ids.
	byPart := map[string][]int{}
	for i, id := range ids {
		part := c.part(kd, id)
		byPart[part] = append(byPart[part], i)
	}
	versions := map[string]*redis.SliceCmd{}
	ents, err := k.read(ctx, c, ids, func(p redis.Pipeliner) {
		for part, at := range byPart {
			fields := make([]string, len(at))
			for j, i := range at {
				fields[j] = ids[i]
			}
			versions[part] = p.HMGet(ctx, c.versionsKey(kd, part), fields...)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	vs := make([]int64, len(ids))
	for part, at := range byPart {
		for j, i := range at {
			s, _ := versions[part].Val()[j].(string)
			vs[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return ents, vs, nil
}

// Page asks for part of a list: at most Limit entities (all when 0), those
// whose ids sort after After (from the first when "").
type Page struct {
	After string
	Limit int
}

// List returns every entity of a kind, sorted by id: ListAll of one kind.
func (k Kind[T]) List(ctx context.Context, c *Cache) ([]T, error) {
	all := k.All()
	err := c.ListAll(ctx, all)
	return all.Items, err
}

// All is the whole list of a kind, which ListAll reads along with others:
// Items, sorted by id, once it has.
type All[T any] struct {
	kind  Kind[T]
	Items []T
	read  reads
}

// All is the kind's whole list, to be read by ListAll.
func (k Kind[T]) All() *All[T] { return &All[T]{kind: k} }

// Listing is a whole list for ListAll: an *All of some kind.
type Listing interface {
	// Entities are the Items, for a caller that does not know T.
	Entities() any
	reads() *reads
	decode() error
}

func (a *All[T]) Entities() any { return a.Items }

func (a *All[T]) reads() *reads {
	a.read.kind = a.kind.kind()
	return &a.read
}

func (a *All[T]) decode() error {
	a.Items = make([]T, len(a.read.ids))
	items := reflect.ValueOf(a.Items)
	n := 0
	for i := range a.read.ids {
		found, err := a.read.decode(i, items.Index(n))
		if err != nil {
			return fmt.Errorf("cached %s %s: %w", a.kind.Name, a.read.ids[i], err)
		}
		if found {
			n++
		}
	}
	a.Items = a.Items[:n]
	return nil
}

// ListAll reads the whole lists of several kinds in two round trips in all,
// whatever their number and size: a pipeline of every set of ids (one per
// partition of each kind), then one of every entity. It reads the sets of
// ids, which a cache written before pages existed has too, so that whole
// lists answer as they did on such a Redis before -rebuild gave it the
// sorted ids pages read. No versions: a list decides nothing.
func (c *Cache) ListAll(ctx context.Context, lists ...Listing) error {
	rs := make([]*reads, len(lists))
	parts := make([][]string, len(lists))
	sets := make([][]*redis.StringSliceCmd, len(lists))
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, l := range lists {
			rs[i] = l.reads()
			parts[i] = c.parts(rs[i].kind)
			for _, part := range parts[i] {
				sets[i] = append(sets[i], p.SMembers(ctx, c.idsKey(rs[i].kind, part)))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range rs {
			// Each id's key, from the part whose set holds it.
			n := 0
			for _, s := range sets[i] {
				n += len(s.Val())
			}
			all := make([]idKey, 0, n)
			for j, s := range sets[i] {
				prefix := c.entityKeyIn(r.kind, parts[i][j], "")
				for _, id := range s.Val() {
					all = append(all, idKey{id, prefix + id})
				}
			}
			slices.SortFunc(all, func(a, b idKey) int { return strings.Compare(a.id, b.id) })
			ids, keys := make([]string, len(all)), make([]string, len(all))
			for j, e := range all {
				ids[j], keys[j] = e.id, e.key
			}
			r.queue(ctx, p, ids, keys)
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return err
	}
	for _, l := range lists {
		if err := l.decode(); err != nil {
			return err
		}
	}
	return nil
}

// ListPage returns a page of a kind's entities, sorted by id, and the After
// of the next page: "" when this one is the last. Two round trips, which
// read the page's entities and no others. The page of all is List.
func (k Kind[T]) ListPage(ctx context.Context, c *Cache, p Page) ([]T, string, error) {
	if p == (Page{}) {
		all, err := k.List(ctx, c)
		return all, "", err
	}
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
	r := reads{kind: k.kind()}
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		if first != nil {
			first(p)
		}
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = c.entityKey(r.kind, id)
		}
		r.queue(ctx, p, ids, keys)
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, err
	}
	out := make([]*T, len(ids))
	for i := range ids {
		var ent T
		found, err := r.decode(i, reflect.ValueOf(&ent).Elem())
		if err != nil {
			return nil, fmt.Errorf("cached %s %s: %w", k.Name, ids[i], err)
		}
		if found {
			out[i] = &ent
		}
	}
	return out, nil
}

type idKey struct{ id, key string }

// reads are the reads of entities of one kind in a pipeline: HMGET of the
// scalar fields, read as strings (a field that is not there reads as ""),
// and LRANGE of each list field.
type reads struct {
	kind   kind
	ids    []string
	hashes []*redis.StringSliceCmd
	lists  []*redis.StringSliceCmd // len(kind.codec.lists) per id
}

// queue adds the reads of the entities with ids, whose hashes are at keys,
// to a pipeline.
func (r *reads) queue(ctx context.Context, p redis.Pipeliner, ids, keys []string) {
	cd := r.kind.codec
	r.ids = ids
	r.hashes = make([]*redis.StringSliceCmd, len(ids))
	r.lists = make([]*redis.StringSliceCmd, 0, len(ids)*len(cd.lists))
	// Every HMGET's arguments in one allocation.
	n := 2 + len(cd.fields)
	args := make([]any, len(ids)*n)
	for i, key := range keys {
		a := args[i*n : (i+1)*n : (i+1)*n]
		a[0], a[1] = "hmget", key
		copy(a[2:], cd.fields)
		r.hashes[i] = redis.NewStringSliceCmd(ctx, a...)
		_ = p.Process(ctx, r.hashes[i])
		for _, f := range cd.lists {
			r.lists = append(r.lists, p.LRange(ctx, key+":"+f.name, 0, -1))
		}
	}
}

// decode sets v, a T, to the i-th entity read; false if it does not exist.
func (r *reads) decode(i int, v reflect.Value) (bool, error) {
	n := len(r.kind.codec.lists)
	return r.kind.codec.decode(v, r.hashes[i].Val(), r.lists[i*n:(i+1)*n])
}
