package main

import (
	"context"
	"net/http"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// body is a customer as clients send it; an id in it is ignored.
type body struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

func check(_ context.Context, _ string, b body) (entitycache.Entity, error) {
	name, email := strings.TrimSpace(b.Name), strings.TrimSpace(b.Email)
	if name == "" {
		return nil, platform.Errorf(http.StatusBadRequest, "name is required")
	}
	if email == "" {
		return nil, platform.Errorf(http.StatusBadRequest, "email is required")
	}
	if err := platform.CheckEmail("email", email); err != nil {
		return nil, err
	}
	return entitycache.Entity{"name": name, "email": email}, nil
}

func wire(app *platform.App) error {
	platform.Queries(app.Router, app.Cache, platform.Customers)
	platform.Commands(app.Router, app.Cache, platform.Rules[body]{Resource: platform.Customers, Check: check})
	return nil
}
