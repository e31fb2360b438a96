package entitycache

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"

	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// applyScript applies one event to the cache unless the cache already has
// that version of the entity or a later one.
var applyScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or 0)
if cur >= tonumber(ARGV[2]) then return 0 end
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
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range events {
			i := slices.IndexFunc(kinds, func(k Projection) bool { return k.kind().name == e.EntityType })
			if i < 0 {
				continue
			}
			k := kinds[i].kind()
			ent, err := kinds[i].decodeEvent(e)
			if err != nil {
				return err
			}
			writes, keys := eventstore.EncodeWrites(c.writes(k, e.EntityID, ent, e.Type == k.deleted, strconv.FormatInt(e.Version, 10)))
			arg, err := json.Marshal(writes)
			if err != nil {
				return err
			}
			applyScript.Eval(ctx, p, append([]string{c.versionsKey(k)}, keys...), e.EntityID, e.Version, arg)
		}
		return nil
	})
	return err
}

// Rebuild drops the cache of the kinds, which all live in one stream, and
// builds it again from the stream. Commands must not run meanwhile.
func (c *Cache) Rebuild(ctx context.Context, kinds ...Projection) error {
	rdb := c.store.Redis()
	stream := kinds[0].kind().stream
	for _, k := range kinds {
		iter := rdb.Scan(ctx, 0, c.store.Key(stream, k.kind().name+"_*"), 500).Iterator()
		for iter.Next(ctx) {
			if err := rdb.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
	}
	return c.store.Replay(ctx, stream, "0", func(events []eventstore.Event) error {
		return c.Apply(ctx, events, kinds...)
	})
}

// StreamOf is the stream a kind lives in.
func StreamOf(p Projection) string { return p.kind().stream }
