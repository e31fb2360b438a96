package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

// body is a customer as clients send it; an id in it is ignored.
type body struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

func build(_ context.Context, _ string, b body) (shop.Customer, error) {
	return shop.NewCustomer(b.Name, b.Email)
}

func wire(app *platform.App, _ platform.NoConfig) error {
	shop.Customers.Queries(app.Router, app.Cache)
	platform.Commands(app, platform.Rules[body, shop.Customer]{Resource: shop.Customers, Build: build})
	return nil
}
