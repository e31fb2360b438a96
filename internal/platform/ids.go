package platform

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
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
