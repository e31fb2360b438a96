package main

import (
	"context"
	"net/http"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// body is a product as clients send it; an id in it is ignored.
type body struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Price *int64 `json:"price"` // in cents
}

func check(_ context.Context, _ string, b body) (entitycache.Entity, error) {
	name := strings.TrimSpace(b.Name)
	switch {
	case name == "":
		return nil, platform.Errorf(http.StatusBadRequest, "name is required")
	case b.Price == nil:
		return nil, platform.Errorf(http.StatusBadRequest, "price is required")
	case *b.Price < 0:
		return nil, platform.Errorf(http.StatusBadRequest, "price must not be negative")
	}
	return entitycache.Entity{"name": name, "price": *b.Price}, nil
}

func wire(app *platform.App) error {
	platform.Queries(app.Router, app.Cache, platform.Products)
	platform.Commands(app.Router, app.Cache, platform.Rules[body]{Resource: platform.Products, Check: check})
	return nil
}
