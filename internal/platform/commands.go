package platform

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Rules are what an entity service says about its entity; Commands does the
// rest. T is the request body.
type Rules[T any] struct {
	Resource
	// Check validates a body for the entity id ("" for a new one) and
	// returns the entity to store, without its id.
	Check func(ctx context.Context, id string, body T) (entitycache.Entity, error)
	// ID derives a new entity's id from it, to allow one entity per key
	// (one inventory per product); nil gives a random UUID.
	ID func(entitycache.Entity) string
}

// Commands adds the write routes of an entity: POST of one object or an array
// (answers the new ids), PUT /{id} full replacement and DELETE /{id} (answer
// true). Each writes its events and cache in one atomic step.
func Commands[T any](r chi.Router, cache *entitycache.Cache, rules Rules[T]) {
	for _, p := range Paths(rules.Resource, "") {
		r.Post(p, Handle(func(r *http.Request) (any, error) { return create(r, cache, rules) }))
	}
	for _, p := range Paths(rules.Resource, "/{id}") {
		r.Put(p, Handle(func(r *http.Request) (any, error) { return replace(r, cache, rules) }))
		r.Delete(p, Handle(func(r *http.Request) (any, error) {
			id, err := ParseID(r)
			if err != nil {
				return nil, err
			}
			return true, Change(r.Context(), cache, rules.Resource, id, rules.Kind.Name+"_deleted", nil)
		}))
	}
}

func create[T any](r *http.Request, cache *entitycache.Cache, rules Rules[T]) (any, error) {
	ctx := r.Context()
	bodies, err := DecodeOneOrMany[T](r)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(bodies))
	ents := make([]entitycache.Entity, len(bodies))
	for i, b := range bodies {
		if ents[i], err = rules.Check(ctx, "", b); err != nil {
			return nil, itemError(err, i, len(bodies))
		}
		ids[i] = uuid.NewString()
		if rules.ID != nil {
			ids[i] = rules.ID(ents[i])
			if slices.Contains(ids[:i], ids[i]) {
				return nil, itemError(Errorf(http.StatusConflict, "%s %s is twice in the list", rules.One, ids[i]), i, len(bodies))
			}
		}
		ents[i]["id"] = ids[i]
	}
	return ids, entitycache.Retry(ctx, func() error {
		changes := make([]entitycache.Change, len(ents))
		for i, e := range ents {
			expected := eventstore.NoEntity
			if rules.ID != nil { // a derived id may have been used before
				cur, v, err := cache.Get(ctx, rules.Kind, ids[i])
				if err != nil {
					return err
				}
				if cur != nil {
					return Errorf(http.StatusConflict, "%s %s already exists", rules.One, ids[i])
				}
				expected = v
			}
			changes[i] = entitycache.Change{Kind: rules.Kind, Type: rules.Kind.Name + "_created", ID: ids[i],
				Entity: e, Expected: expected, Meta: TraceMeta(ctx)}
		}
		_, err := cache.Commit(ctx, changes...)
		return err
	})
}

func itemError(err error, i, n int) error {
	var e *Error
	if n > 1 && errors.As(err, &e) {
		return Errorf(e.Status, "item %d: %s", i, e.Msg)
	}
	return err
}

func replace[T any](r *http.Request, cache *entitycache.Cache, rules Rules[T]) (any, error) {
	id, err := ParseID(r)
	if err != nil {
		return nil, err
	}
	var body T
	if err := Decode(r, &body); err != nil {
		return nil, err
	}
	ent, err := rules.Check(r.Context(), id, body)
	if err != nil {
		return nil, err
	}
	ent["id"] = id
	return true, Change(r.Context(), cache, rules.Resource, id, rules.Kind.Name+"_updated", func(entitycache.Entity) (entitycache.Entity, error) {
		return ent, nil
	})
}

// Change reads an entity, lets next decide its new state, and commits that
// with the version it read, again on a conflict. A nil next deletes the
// entity. An unknown entity is a 404.
func Change(ctx context.Context, cache *entitycache.Cache, res Resource, id, eventType string,
	next func(entitycache.Entity) (entitycache.Entity, error)) error {
	return entitycache.Retry(ctx, func() error {
		cur, v, err := cache.Get(ctx, res.Kind, id)
		if err != nil {
			return err
		}
		if cur == nil {
			return Errorf(http.StatusNotFound, "no %s %s", res.One, id)
		}
		ent := cur
		if next != nil {
			if ent, err = next(cur); err != nil {
				return err
			}
		}
		_, err = cache.Commit(ctx, entitycache.Change{Kind: res.Kind, Type: eventType, ID: id, Entity: ent, Expected: v, Meta: TraceMeta(ctx)})
		return err
	})
}
