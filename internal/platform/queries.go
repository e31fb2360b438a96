package platform

import (
	"net/http"
	"net/mail"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// ParseID reads the {id} of a route; it must be a UUID.
func ParseID(r *http.Request) (string, error) {
	return CheckUUID("id", chi.URLParam(r, "id"))
}

// CheckUUID checks that a field is a UUID and returns its canonical form.
func CheckUUID(field, s string) (string, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", Errorf(http.StatusBadRequest, "%s must be a UUID, not %q", field, s)
	}
	return id.String(), nil
}

// CheckEmail checks that a field is a plain e-mail address.
func CheckEmail(field, s string) error {
	if a, err := mail.ParseAddress(s); err != nil || a.Address != s {
		return Errorf(http.StatusBadRequest, "%s %q is not an e-mail address", field, s)
	}
	return nil
}

// DerivedID is the id of the one entity of a kind that belongs to a key, e.g.
// the inventory of a product: the same key always gives the same id.
func DerivedID(kind, key string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("ordershop:"+kind+":"+key)).String()
}

// Paths are the route patterns of a resource, without repeats:
// Paths(Customers, "/{id}") is /customer/{id} and /customers/{id}.
func Paths(res Resource, suffix string) []string {
	if res.One == res.Many {
		return []string{"/" + res.One + suffix}
	}
	return []string{"/" + res.One + suffix, "/" + res.Many + suffix}
}

// Queries adds the read routes of a resource, answered from the entity cache:
// GET /customers lists them, GET /customer/{id} answers the entity or null
// (as the original API did), GET /customers/{id} the entity or 404.
func Queries(r chi.Router, cache *entitycache.Cache, res Resource) {
	r.Get("/"+res.Many, Handle(func(r *http.Request) (any, error) {
		return cache.List(r.Context(), res.Kind)
	}))
	for _, p := range Paths(res, "/{id}") {
		plural := res.One != res.Many && strings.HasPrefix(p, "/"+res.Many+"/")
		r.Get(p, Handle(func(r *http.Request) (any, error) {
			id, err := ParseID(r)
			if err != nil {
				return nil, err
			}
			e, _, err := cache.Get(r.Context(), res.Kind, id)
			if err == nil && e == nil && plural {
				return nil, Errorf(http.StatusNotFound, "no %s %s", res.One, id)
			}
			return e, err
		}))
	}
}
