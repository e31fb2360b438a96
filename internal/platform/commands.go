package platform

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Rules are what an entity service says about its entity; Commands does the
// rest. B is the request body, T the entity.
type Rules[B, T any] struct {
	Resource[T]
	// Build validates a body for the entity id ("" for a new one) and
	// returns the entity to store. An entity whose id Build already set has
	// an id derived from its content (the one inventory of a product), which
	// may have been used before; the others get a random UUID.
	Build func(ctx context.Context, id string, body B) (T, error)
	// CheckDelete, if set, may refuse to delete an entity as it is, e.g.
	// one still in use. It runs again when a concurrent change makes the
	// delete retry, so what it read is never stale at the commit.
	CheckDelete func(ctx context.Context, cur T) error
}

// Commands adds the write routes of an entity to the app: POST of one object
// or an array of at most MaxBatch (answers the new ids), PUT /{id} full
// replacement and DELETE /{id} (answer true), both conditional on If-Match
// when it is given (see UpdateIfMatch). Each writes its events and cache in one
// atomic step.
func Commands[B, T any](app *App, rules Rules[B, T]) {
	r, cache := app.Router, app.Cache
	for _, p := range rules.Paths("") {
		r.Post(p, Handle(func(r *http.Request) (any, error) { return create(r, cache, rules, app.Config.MaxBatch) }))
	}
	for _, p := range rules.Paths("/{id}") {
		r.Put(p, Handle(func(r *http.Request) (any, error) { return replace(r, cache, rules) }))
		r.Delete(p, Handle(func(r *http.Request) (any, error) {
			id, err := ParseID(r)
			if err != nil {
				return nil, err
			}
			return true, UpdateIfMatch(r, cache, rules.Resource, id, rules.Deleted, func(cur T) (T, error) {
				if rules.CheckDelete != nil {
					return cur, rules.CheckDelete(r.Context(), cur)
				}
				return cur, nil
			})
		}))
	}
}

func create[B, T any](r *http.Request, cache *entitycache.Cache, rules Rules[B, T], maxBatch int) (any, error) {
	ctx := r.Context()
	bodies, err := DecodeOneOrMany[B](r, maxBatch)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(bodies))
	ents := make([]T, len(bodies))
	var derived []int
	for i, b := range bodies {
		if ents[i], err = rules.Build(ctx, "", b); err != nil {
			return nil, itemError(err, i, len(bodies))
		}
		ids[i] = rules.ID(ents[i])
		if ids[i] == "" {
			ids[i] = rules.NewID(ctx, cache, ids[0], i) // a batch in one partition, so it commits whole
			ents[i] = rules.WithID(ents[i], ids[i])
			continue
		}
		if slices.Contains(ids[:i], ids[i]) {
			return nil, itemError(Errorf(http.StatusConflict, "%s %s is twice in the list", rules.One, ids[i]), i, len(bodies))
		}
		derived = append(derived, i)
	}
	// A batch that spans partitions commits one partition after the
	// other: what a pass wrote stays written, and is named in the error if
	// a later pass fails.
	var written []string
	err = entitycache.Retry(ctx, func() error {
		expected := slices.Repeat([]int64{eventstore.NoEntity}, len(ents))
		if len(derived) > 0 {
			want := make([]string, len(derived))
			for j, i := range derived {
				want[j] = ids[i]
			}
			cur, versions, err := rules.GetMany(ctx, cache, want...)
			if err != nil {
				return err
			}
			for j, i := range derived {
				expected[i] = versions[j]
				if cur[j] == nil || slices.Contains(written, ids[i]) {
					continue
				}
				// It exists: made by this command's try before, sent with
				// its Idempotency-Key, or else by another.
				if done, err := rules.Done(ctx, cache, ids[i], rules.Created); !done || err != nil {
					return cmp.Or(err, Errorf(http.StatusConflict, "%s %s already exists", rules.One, ids[i]))
				}
				written = append(written, ids[i])
			}
		}
		var changes []entitycache.Change
		for i, e := range ents {
			if !slices.Contains(written, ids[i]) {
				changes = append(changes, rules.Change(rules.Created, e, expected[i]))
			}
		}
		events, err := cache.Commit(ctx, changes...)
		for _, e := range events {
			written = append(written, e.EntityID)
		}
		return err
	})
	if err != nil && len(written) > 0 {
		status, msg, _ := StatusOf(err)
		return nil, &Error{Status: status, Msg: msg, Written: written}
	}
	return ids, err
}

func replace[B, T any](r *http.Request, cache *entitycache.Cache, rules Rules[B, T]) (any, error) {
	id, err := ParseID(r)
	if err != nil {
		return nil, err
	}
	var body B
	if err := Decode(r, &body); err != nil {
		return nil, err
	}
	ent, err := rules.Build(r.Context(), id, body)
	if err != nil {
		return nil, err
	}
	return true, UpdateIfMatch(r, cache, rules.Resource, id, rules.Updated, func(T) (T, error) { return ent, nil })
}

// ETag is the entity tag of an entity at a version: strong, since a version
// names exactly one state of the entity.
func ETag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// UpdateIfMatch commits the change of an existing entity that decide computes, as
// an event of type typ. Without If-Match (or with "*") it is the kind's
// Update, which decides again on a concurrent change. With If-Match it goes
// ahead only from the version the header names, and commits expecting that
// version, so that a change landing in between is a 412 as well, never
// overwritten unseen.
//
// A try of a command sent again with its Idempotency-Key, whose first try
// committed (its answer was lost), succeeds at once: the entity may have
// changed or gone since, by that very commit.
func UpdateIfMatch[T any](r *http.Request, cache *entitycache.Cache, res Resource[T], id, typ string, decide func(T) (T, error)) error {
	ctx := r.Context()
	if done, err := res.Done(ctx, cache, id, typ); done || err != nil {
		return err
	}
	if m := r.Header.Get("If-Match"); m == "" || m == "*" {
		return res.Update(ctx, cache, id, typ, decide)
	}
	cur, version, err := res.Get(ctx, cache, id)
	if err != nil {
		return err
	}
	if cur == nil {
		return &entitycache.NotFoundError{Kind: res.One, ID: id}
	}
	if err := CheckIfMatch(r, res.One, id, version); err != nil {
		return err
	}
	next, err := decide(*cur)
	if err != nil {
		return err
	}
	_, err = cache.Commit(ctx, res.Kind.Change(typ, res.WithID(next, id), version))
	if errors.Is(err, eventstore.ErrConflict) {
		return Errorf(http.StatusPreconditionFailed, "%s %s was changed meanwhile: its ETag is no longer %s", res.One, id, ETag(version))
	}
	return err
}

// CheckIfMatch refuses with 412 the change of an entity at a version that
// the request's If-Match does not name. Tags compare strongly (RFC 9110): a
// weak tag W/"…" or a malformed one names none.
func CheckIfMatch(r *http.Request, kind, id string, version int64) error {
	m := r.Header.Get("If-Match")
	if m == "" || m == "*" {
		return nil
	}
	for _, tag := range strings.Split(m, ",") {
		if strings.TrimSpace(tag) == ETag(version) {
			return nil
		}
	}
	return Errorf(http.StatusPreconditionFailed, "%s %s is at %s, not at the version If-Match names", kind, id, ETag(version))
}
