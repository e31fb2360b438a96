package entitycache

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

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

// Apply applies events to the cache, skipping those it already has. Events
// of types other than the kinds given are left alone. One round trip.
func (c *Cache) Apply(ctx context.Context, events []eventstore.Event, kinds ...Kind) error {
	_, err := c.store.Redis().Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range events {
			k, ok := kindOf(kinds, e.EntityType)
			if !ok {
				continue
			}
			ent, deleted, err := Decode(e)
			if err != nil {
				return err
			}
			writes, keys := eventstore.EncodeWrites(c.writes(k, e.EntityID, ent, deleted, strconv.FormatInt(e.Version, 10)))
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

func kindOf(kinds []Kind, name string) (Kind, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// Decode reads the entity of an event; deleted says the event removes it.
func Decode(e eventstore.Event) (ent Entity, deleted bool, err error) {
	dec := json.NewDecoder(strings.NewReader(string(e.Entity)))
	dec.UseNumber()
	if err := dec.Decode(&ent); err != nil {
		return nil, false, fmt.Errorf("event %s: entity is not a JSON object: %w", e.StreamID, err)
	}
	return ent, Deletes(e.Type), nil
}

// Rebuild drops the cache of the kinds, which all live in one stream, and
// builds it again from the stream. Commands must not run meanwhile.
func (c *Cache) Rebuild(ctx context.Context, kinds ...Kind) error {
	rdb := c.store.Redis()
	stream := kinds[0].StreamName()
	for _, k := range kinds {
		iter := rdb.Scan(ctx, 0, c.store.Key(stream, k.Name+"_*"), 500).Iterator()
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
