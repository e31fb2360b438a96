// Package entitycache is the set/hash projection of the event streams that
// queries read: a set of ids per entity type, a hash per entity, and a list
// per list-valued field. A command appends its event and updates the cache in
// one atomic script (Commit), so the next read sees it.
//
// Entities are Go structs: a Kind[T] names an entity type and reads and
// writes its T, and the codec (codec.go) maps T's fields, by their JSON
// names, to the layout. Keys carry the stream's hash tag. For an order
// (stream "order"):
//
//	{order}:order_ids                          set of ids
//	{order}:order_sorted_ids                   the same ids, sorted (score 0)
//	{order}:order_entity:<id>                  hash of the scalar fields
//	{order}:order_entity:<id>:product_ids      list field
//	{email}:email_by_to:<value>                sorted ids by an Index field
//
// The version of each entity is the event store's ({order}:versions), which
// the append that commits the entity writes in the same step: one hash says
// both which version commands expect and which one the cache holds. It keeps
// the versions of deleted entities too, so applying an event again, or an
// older one, changes nothing. The sorted sets exist so that a page of a list
// (read.go) is a range of ids, not a read of all.
package entitycache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"time"

	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Kind is one entity type, cached as T: a struct of string, int64, bool and
// []string fields with JSON tags, one of them "id". Its event types are named
// here, so that a rebuild knows which events remove an entity.
type Kind[T any] struct {
	Name    string // entity type, e.g. "order"
	Stream  string // the stream it lives in; Name when empty
	Created string // event types, e.g. "order_created"
	Updated string
	Deleted string
	// Index names a string field, e.g. "to", whose values are indexed for
	// ListBy. Its entry is made on create and update and removed on delete,
	// from the entity the event carries, so the field must never change.
	Index string
	// OnePartition keeps every entity of the kind in the first partition of
	// its stream, for kinds whose entities change together in one commit
	// (stock and reservations): a commit is atomic within one partition only.
	OnePartition bool
}

// StreamName is the stream of the kind.
func (k Kind[T]) StreamName() string {
	if k.Stream != "" {
		return k.Stream
	}
	return k.Name
}

// ID is an entity's id.
func (k Kind[T]) ID(ent T) string { return codecOf[T]().idOf(reflect.ValueOf(ent)) }

// WithID is the entity with its id set.
func (k Kind[T]) WithID(ent T, id string) T {
	c := codecOf[T]()
	v := reflect.ValueOf(&ent).Elem()
	v.Field(c.scalars[c.id].index).SetString(id)
	return ent
}

// kind is a Kind seen without its Go type.
type kind struct {
	name, stream, deleted string
	onePartition          bool
	codec                 *codec
	index                 int // of the Index field in codec.scalars; -1 without one
}

func (k Kind[T]) kind() kind {
	c := codecOf[T]()
	return kind{name: k.Name, stream: k.StreamName(), deleted: k.Deleted, onePartition: k.OnePartition, codec: c, index: c.stringField(k.Index)}
}

// Cache reads and writes the entity cache next to an event store.
type Cache struct {
	store *eventstore.Store
}

// New returns the cache of a store's streams.
func New(store *eventstore.Store) *Cache { return &Cache{store: store} }

// Store is the event store the cache projects.
func (c *Cache) Store() *eventstore.Store { return c.store }

// part is the stream, a partition of the kind's, that holds an entity.
func (c *Cache) part(k kind, id string) string {
	if k.onePartition {
		return c.store.FirstPartition(k.stream)
	}
	return c.store.PartitionOf(k.stream, id)
}

// parts are the streams that hold the kind's entities.
func (c *Cache) parts(k kind) []string {
	if k.onePartition {
		return []string{c.store.FirstPartition(k.stream)}
	}
	return c.store.Partitions(k.stream)
}

// The keys of a kind in one of its parts.
func (c *Cache) idsKey(k kind, part string) string { return c.store.Key(part, k.name+"_ids") }
func (c *Cache) sortedIDsKey(k kind, part string) string {
	return c.store.Key(part, k.name+"_sorted_ids")
}

// versionsKey is the versions hash of the part: the event store's, which
// the kinds of a stream share.
func (c *Cache) versionsKey(_ kind, part string) string { return c.store.Key(part, "versions") }
func (c *Cache) entityKey(k kind, id string) string     { return c.entityKeyIn(k, c.part(k, id), id) }

// entityKeyIn is the key of an entity in a part; with id "" the prefix of
// every entity's key there, to which a list of many adds each id.
func (c *Cache) entityKeyIn(k kind, part, id string) string {
	return c.store.Key(part, k.name+"_entity:"+id)
}

// indexKey is the sorted set of the ids in a part whose Index field holds value.
func (c *Cache) indexKey(k kind, part, value string) string {
	return c.store.Key(part, k.name+"_by_"+k.codec.scalars[k.index].name+":"+value)
}

// Change is what a command does to one entity: an event of a type, with the
// entity after it (before it, for the kind's Deleted type).
type Change struct {
	kind     kind
	Type     string
	ID       string
	Expected int64 // eventstore.AnyVersion, NoEntity or the current version
	entity   reflect.Value
}

// Change is the change of an entity by an event of type typ, expecting the
// entity at a version.
func (k Kind[T]) Change(typ string, ent T, expected int64) Change {
	return Change{kind: k.kind(), Type: typ, ID: k.ID(ent), Expected: expected, entity: reflect.ValueOf(ent)}
}

// Commit appends the changes' events to their stream and updates the cache in
// one atomic step. All changes must live in the same stream. With
// partitions, changes of entities in several partitions are committed one
// partition after the other, each atomic: a commit that must be whole keeps
// to one partition (NewID, OnePartition).
func (c *Cache) Commit(ctx context.Context, changes ...Change) ([]eventstore.Event, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	stream := changes[0].kind.stream
	var parts []string
	recs := map[string][]eventstore.Record{}
	for _, ch := range changes {
		if ch.kind.stream != stream {
			return nil, fmt.Errorf("entitycache: one commit spans streams %s and %s", stream, ch.kind.stream)
		}
		e, err := eventstore.NewEvent(ch.Type, ch.kind.name, ch.ID, ch.entity.Interface())
		if err != nil {
			return nil, err
		}
		part := c.part(ch.kind, ch.ID)
		if recs[part] == nil {
			parts = append(parts, part)
		}
		recs[part] = append(recs[part], eventstore.Record{
			Event: e, Expected: ch.Expected,
			Writes: c.writes(ch.kind, ch.ID, ch.entity, ch.Type == ch.kind.deleted),
		})
	}
	var events []eventstore.Event
	for _, part := range parts {
		es, err := c.store.Append(ctx, part, recs[part]...)
		if err != nil {
			return events, err
		}
		events = append(events, es...)
	}
	return events, nil
}

// NewID is a new id for the n-th new entity of the kind in a command, in
// the partition of near when near is not "", so that new entities committed
// together (a batch) are committed in one step. It is random, or, for a
// command with an idempotency key, derived from the key (see
// eventstore.KeyedID): the same on every try, so that a try after one whose
// answer was lost creates nothing new.
func (k Kind[T]) NewID(ctx context.Context, c *Cache, near string, n int) string {
	for try := 0; ; try++ {
		id := eventstore.KeyedID(ctx, "id", k.Name, strconv.Itoa(n), strconv.Itoa(try))
		if near == "" || c.part(k.kind(), id) == c.part(k.kind(), near) {
			return id
		}
	}
}

// writes are the cache commands that apply one event: the entity is replaced
// whole, or removed. Its version is the append's to record.
func (c *Cache) writes(k kind, id string, ent reflect.Value, deleted bool) []eventstore.Write {
	part := c.part(k, id)
	key := c.entityKey(k, id)
	ws := []eventstore.Write{{Cmd: "DEL", Key: key}}
	for _, f := range k.codec.lists {
		ws = append(ws, eventstore.Write{Cmd: "DEL", Key: key + ":" + f.name})
	}
	// The id is in the set of ids and in sorted sets, where every member
	// has score 0, so that they sort by id alone: the kind's, and its
	// Index's for the entity's value.
	sorted := []string{c.sortedIDsKey(k, part)}
	if k.index >= 0 {
		sorted = append(sorted, c.indexKey(k, part, k.codec.text(ent, k.index)))
	}
	if deleted {
		ws = append(ws, eventstore.Write{Cmd: "SREM", Key: c.idsKey(k, part), Args: []any{id}})
		for _, s := range sorted {
			ws = append(ws, eventstore.Write{Cmd: "ZREM", Key: s, Args: []any{id}})
		}
	} else {
		for i, f := range k.codec.lists {
			if items := k.codec.list(ent, i); len(items) > 0 {
				args := make([]any, len(items))
				for j, s := range items {
					args[j] = s
				}
				ws = append(ws, eventstore.Write{Cmd: "RPUSH", Key: key + ":" + f.name, Args: args})
			}
		}
		ws = append(ws,
			eventstore.Write{Cmd: "HSET", Key: key, Args: k.codec.hash(ent)},
			eventstore.Write{Cmd: "SADD", Key: c.idsKey(k, part), Args: []any{id}})
		for _, s := range sorted {
			ws = append(ws, eventstore.Write{Cmd: "ZADD", Key: s, Args: []any{"0", id}})
		}
	}
	return ws
}

// Update reads an entity, lets decide compute its next state, and commits it
// as an event of type typ, expecting the version it read; on a conflict it
// reads and decides again, so decide must only decide. An unknown entity is a
// *NotFoundError.
func (k Kind[T]) Update(ctx context.Context, c *Cache, id, typ string, decide func(T) (T, error)) error {
	return Retry(ctx, func() error {
		cur, v, err := k.Get(ctx, c, id)
		if err != nil {
			return err
		}
		if cur == nil {
			return &NotFoundError{Kind: k.Name, ID: id}
		}
		next, err := decide(*cur)
		if err != nil {
			return err
		}
		_, err = c.Commit(ctx, k.Change(typ, k.WithID(next, id), v))
		return err
	})
}

// Done says whether the command of ctx, sent before with its idempotency
// key, committed an event of type typ of the entity: see
// eventstore.Store.Appended.
func (k Kind[T]) Done(ctx context.Context, c *Cache, id, typ string) (bool, error) {
	return c.store.Appended(ctx, c.part(k.kind(), id), k.Name, id, typ)
}

// Delete removes an entity by its kind's Deleted event, which carries the
// entity as it was. An unknown entity is a *NotFoundError.
func (k Kind[T]) Delete(ctx context.Context, c *Cache, id string) error {
	return k.Update(ctx, c, id, k.Deleted, func(cur T) (T, error) { return cur, nil })
}

// ErrNotFound is matched by every NotFoundError.
var ErrNotFound = errors.New("no such entity")

// NotFoundError says an entity does not exist.
type NotFoundError struct{ Kind, ID string }

func (e *NotFoundError) Error() string        { return "no " + e.Kind + " " + e.ID }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

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
