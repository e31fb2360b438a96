package platform

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// Resource is an entity kind as clients reach it: /customer/{id} (One) and
// /customers/{id} (Many).
type Resource[T any] struct {
	entitycache.Kind[T]
	One, Many string
}

// Collection is a Resource seen without its Go type, as the gateway serves
// them all.
type Collection interface {
	Plural() string               // "customers": the list's route and its key in /report
	Paths(suffix string) []string // the route patterns with suffix
	Queries(r chi.Router, cache *entitycache.Cache)
	// Listing is its whole list, for entitycache's ListAll to read along
	// with others'.
	Listing() entitycache.Listing
}

// Plural is the resource's plural name.
func (res Resource[T]) Plural() string { return res.Many }

// Paths are the route patterns of a resource, without repeats:
// Customers.Paths("/{id}") is /customer/{id} and /customers/{id}.
func (res Resource[T]) Paths(suffix string) []string {
	if res.One == res.Many {
		return []string{"/" + res.One + suffix}
	}
	return []string{"/" + res.One + suffix, "/" + res.Many + suffix}
}

// Listing is the resource's whole list, to be read by entitycache's ListAll.
func (res Resource[T]) Listing() entitycache.Listing { return res.All() }

// Queries adds the read routes of a resource, answered from the entity cache:
// GET /customers lists them (all, or a page: see List), GET /customer/{id}
// answers the entity or null (as the original API did), GET /customers/{id}
// the entity or 404; an entity comes with its version as ETag, for If-Match.
func (res Resource[T]) Queries(r chi.Router, cache *entitycache.Cache) {
	r.Get("/"+res.Many, List(func(r *http.Request, p entitycache.Page) ([]T, string, error) {
		return res.ListPage(r.Context(), cache, p)
	}))
	for _, p := range res.Paths("/{id}") {
		plural := res.One != res.Many && strings.HasPrefix(p, "/"+res.Many+"/")
		r.Get(p, func(w http.ResponseWriter, r *http.Request) {
			Handle(func(r *http.Request) (any, error) {
				id, err := ParseID(r)
				if err != nil {
					return nil, err
				}
				e, version, err := res.Get(r.Context(), cache, id)
				if err == nil && e == nil && plural {
					return nil, &entitycache.NotFoundError{Kind: res.One, ID: id}
				}
				if e != nil {
					w.Header().Set("ETag", ETag(version))
				}
				return e, err
			})(w, r)
		})
	}
}
