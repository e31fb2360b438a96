package main

import (
	"context"
	"net/http"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

// body is a product as clients send it; an id in it is ignored.
type body struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Price *int64 `json:"price"` // in cents; required, so a pointer
}

func build(_ context.Context, _ string, b body) (shop.Product, error) {
	if b.Price == nil {
		return shop.Product{}, platform.Errorf(http.StatusBadRequest, "price is required")
	}
	return shop.NewProduct(b.Name, *b.Price)
}

func wire(app *platform.App, _ platform.NoConfig) error {
	shop.Products.Queries(app.Router, app.Cache)
	platform.Commands(app, platform.Rules[body, shop.Product]{Resource: shop.Products, Build: build})
	return nil
}
