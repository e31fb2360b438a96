// Package entitycache is the set/hash projection of the event streams that
// queries read: a set of ids per entity type, a hash per entity, and a list
// per list-valued field. A command appends its event and updates the cache in
// one atomic script (Commit), so the next read sees it.
//
// Keys carry the stream's hash tag. For an order (stream "order"):
//
//	{order}:order_ids                          set of ids
//	{order}:order_entity:<id>                  hash of the scalar fields
//	{order}:order_entity:<id>:product_ids      list field
//	{order}:order_versions                     hash: id -> version applied
//
// The versions hash keeps the versions of deleted entities too, so applying
// an event again, or an older one, changes nothing.
package entitycache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Entity is an entity as JSON sees it: numbers are json.Number, lists []any.
type Entity = map[string]any

// Kind describes how one entity type is cached.
type Kind struct {
	Name    string   // entity type, e.g. "order"
	Stream  string   // the stream it lives in; Name when empty
	Lists   []string // list-valued fields
	Numbers []string // fields read back as JSON numbers
	Bools   []string // fields read back as true/false
}

// StreamName is the stream of the kind.
func (k Kind) StreamName() string {
	if k.Stream != "" {
		return k.Stream
	}
	return k.Name
}

// Cache reads and writes the entity cache next to an event store.
type Cache struct {
	store *eventstore.Store
}

// New returns the cache of a store's streams.
func New(store *eventstore.Store) *Cache { return &Cache{store: store} }

// Store is the event store the cache projects.
func (c *Cache) Store() *eventstore.Store { return c.store }

func (c *Cache) idsKey(k Kind) string      { return c.store.Key(k.StreamName(), k.Name+"_ids") }
func (c *Cache) versionsKey(k Kind) string { return c.store.Key(k.StreamName(), k.Name+"_versions") }
func (c *Cache) entityKey(k Kind, id string) string {
	return c.store.Key(k.StreamName(), k.Name+"_entity:"+id)
}

// Deletes says whether an event type removes its entity: its name ends in
// "_deleted", e.g. customer_deleted.
func Deletes(eventType string) bool { return strings.HasSuffix(eventType, "_deleted") }

// Change is what a command does to one entity.
type Change struct {
	Kind     Kind
	Type     string            // event type, e.g. order_created
	ID       string            // entity id
	Entity   Entity            // the entity after the change; before it, for a delete
	Expected int64             // eventstore.AnyVersion, NoEntity or the current version
	Meta     map[string]string // event metadata, e.g. traceparent
}

// Commit appends the changes' events to their stream and updates the cache in
// one atomic step. All changes must live in the same stream.
func (c *Cache) Commit(ctx context.Context, changes ...Change) ([]eventstore.Event, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	stream := changes[0].Kind.StreamName()
	recs := make([]eventstore.Record, len(changes))
	for i, ch := range changes {
		if ch.Kind.StreamName() != stream {
			return nil, fmt.Errorf("entitycache: one commit spans streams %s and %s", stream, ch.Kind.StreamName())
		}
		e, err := eventstore.NewEvent(ch.Type, ch.Kind.Name, ch.ID, ch.Entity)
		if err != nil {
			return nil, err
		}
		for k, v := range ch.Meta {
			e.Meta[k] = v
		}
		recs[i] = eventstore.Record{
			Event: e, Expected: ch.Expected,
			Writes: c.writes(ch.Kind, ch.ID, ch.Entity, Deletes(ch.Type), eventstore.VersionArg),
		}
	}
	return c.store.Append(ctx, stream, recs...)
}

// writes are the cache commands that apply one event: the entity is replaced
// whole, or removed, and its version recorded.
func (c *Cache) writes(k Kind, id string, ent Entity, deleted bool, version any) []eventstore.Write {
	key := c.entityKey(k, id)
	ws := []eventstore.Write{{Cmd: "DEL", Key: key}}
	for _, f := range k.Lists {
		ws = append(ws, eventstore.Write{Cmd: "DEL", Key: key + ":" + f})
	}
	if deleted {
		ws = append(ws, eventstore.Write{Cmd: "SREM", Key: c.idsKey(k), Args: []any{id}})
	} else {
		var fields []any
		for f, v := range ent {
			if slices.Contains(k.Lists, f) {
				if items, ok := v.([]any); ok && len(items) > 0 {
					ws = append(ws, eventstore.Write{Cmd: "RPUSH", Key: key + ":" + f, Args: scalars(items)})
				}
				continue
			}
			if v != nil {
				fields = append(fields, f, scalar(v))
			}
		}
		if len(fields) > 0 {
			ws = append(ws, eventstore.Write{Cmd: "HSET", Key: key, Args: fields})
		}
		ws = append(ws, eventstore.Write{Cmd: "SADD", Key: c.idsKey(k), Args: []any{id}})
	}
	return append(ws, eventstore.Write{Cmd: "HSET", Key: c.versionsKey(k), Args: []any{id, version}})
}

func scalars(items []any) []any {
	out := make([]any, len(items))
	for i, v := range items {
		out[i] = scalar(v)
	}
	return out
}

func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// Retry runs fn again while it fails with a version conflict, after a short
// random pause, until it succeeds, fails otherwise, or ctx ends. Commands
// that read, decide, and Commit with the version they read use it.
func Retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if !errors.Is(err, eventstore.ErrConflict) || attempt == 1000 {
			return err
		}
		pause := time.Duration(rand.Int64N(int64(min(attempt, 10)) * int64(time.Millisecond)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}
