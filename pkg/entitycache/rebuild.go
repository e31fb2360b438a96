package entitycache

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"

	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// applyScript applies one event to the cache, and its version, unless the
// versions hash already has a later version of the entity, or the same one
// and ARGV[4] is not "repair". A commit writes the cache and its version in
// one step, so an event older than the version never overwrites a newer
// entity.
var applyScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or 0)
local v = tonumber(ARGV[2])
if cur > v or (cur == v and ARGV[4] ~= 'repair') then return 0 end
for _, w in ipairs(cjson.decode(ARGV[3])) do redis.call(unpack(w)) end
return 1
`)

// Projection is a Kind seen without its Go type, as Apply and Rebuild take
// the kinds of a stream.
type Projection interface {
	kind() kind
	decodeEvent(e eventstore.Event) (reflect.Value, error)
}

func (k Kind[T]) decodeEvent(e eventstore.Event) (reflect.Value, error) {
	var ent T
	err := e.Decode(&ent)
	return reflect.ValueOf(ent), err
}

// Apply applies events to the cache, skipping those it already has. Events
// of types other than the kinds given are left alone. One round trip.
func (c *Cache) Apply(ctx context.Context, events []eventstore.Event, kinds ...Projection) error {
	return c.apply(ctx, events, kinds, "")
}

// apply is Apply; with mode "repair" it also writes an event again whose
// version the cache has, to mend a damaged entity.
func (c *Cache) apply(ctx context.Context, events []eventstore.Event, kinds []Projection, mode string) error {
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range events {
			k, ws, err := c.writesOf(e, kinds)
			if err != nil {
				return err
			}
			if ws == nil {
				continue
			}
			versions := c.versionsKey(k, c.part(k, e.EntityID))
			ws = append(ws, eventstore.Write{Cmd: "HSET", Key: versions, Args: []any{e.EntityID, e.Version}})
			writes, keys := eventstore.EncodeWrites(ws)
			arg, err := json.Marshal(writes)
			if err != nil {
				return err
			}
			applyScript.Eval(ctx, p, append([]string{versions}, keys...), e.EntityID, e.Version, arg, mode)
		}
		return nil
	})
	return err
}

// writesOf are the cache writes that apply an event, and its kind; none for
// an event of none of the kinds.
func (c *Cache) writesOf(e eventstore.Event, kinds []Projection) (kind, []eventstore.Write, error) {
	i := slices.IndexFunc(kinds, func(k Projection) bool { return k.kind().name == e.EntityType })
	if i < 0 {
		return kind{}, nil, nil
	}
	k := kinds[i].kind()
	ent, err := kinds[i].decodeEvent(e)
	if err != nil {
		return k, nil, err
	}
	return k, c.writes(k, e.EntityID, ent, e.Type == k.deleted), nil
}

// Rebuild builds the cache of the kinds, which all live in one stream, again
// from the stream: lost entities come back and damaged ones are mended. It is
// safe while commands run: every event is applied only over an older version
// of its entity (or the same one, to mend it), so a rebuild never undoes a
// commit that lands meanwhile, and no entity is ever missing on the way.
//
// A Redis written before the cache shared the store's versions hash has one
// of its own per kind ({order}:order_versions), which nothing reads any
// more: the rebuild removes it.
func (c *Cache) Rebuild(ctx context.Context, kinds ...Projection) error {
	for _, part := range c.store.Partitions(kinds[0].kind().stream) {
		for _, k := range kinds {
			if err := c.store.Redis().Del(ctx, c.store.Key(part, k.kind().name+"_versions")).Err(); err != nil {
				return err
			}
		}
	}
	return c.store.ReplayAll(ctx, kinds[0].kind().stream, func(events []eventstore.Event) error {
		return c.apply(ctx, events, kinds, "repair")
	})
}

// StreamOf is the stream a kind lives in: with partitions, the name of all
// of them.
func StreamOf(p Projection) string { return p.kind().stream }
