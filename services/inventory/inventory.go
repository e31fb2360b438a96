package main

import (
	"context"
	"net/http"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// body is an inventory item as clients send it; an id in it is ignored.
type body struct {
	ID        string `json:"id"`
	ProductID string `json:"product_id"`
	Amount    *int64 `json:"amount"`
}

// inventoryID is the id of a product's one inventory item, so that two
// creates for one product conflict in the store.
func inventoryID(productID string) string { return platform.DerivedID("inventory", productID) }

type inventory struct {
	cache *entitycache.Cache
}

func (inv inventory) check(ctx context.Context, id string, b body) (entitycache.Entity, error) {
	productID, err := platform.CheckUUID("product_id", b.ProductID)
	if err != nil {
		return nil, err
	}
	switch {
	case b.Amount == nil:
		return nil, platform.Errorf(http.StatusBadRequest, "amount is required")
	case *b.Amount < 0:
		return nil, platform.Errorf(http.StatusBadRequest, "amount must not be negative")
	case id != "" && inventoryID(productID) != id:
		return nil, platform.Errorf(http.StatusBadRequest, "inventory %s is not the inventory of product %s", id, productID)
	}
	product, _, err := inv.cache.Get(ctx, platform.Products.Kind, productID)
	if err != nil {
		return nil, err
	}
	if product == nil {
		return nil, platform.Errorf(http.StatusNotFound, "no product %s", productID)
	}
	return entitycache.Entity{"product_id": productID, "amount": *b.Amount}, nil
}

func wire(app *platform.App) error {
	inv := inventory{cache: app.Cache}
	platform.Queries(app.Router, app.Cache, platform.Inventory)
	platform.Commands(app.Router, app.Cache, platform.Rules[body]{
		Resource: platform.Inventory, Check: inv.check,
		ID: func(e entitycache.Entity) string { return inventoryID(e["product_id"].(string)) },
	})
	app.Router.Put("/reservations/{id}", platform.Handle(inv.reserve))
	app.Router.Delete("/reservations/{id}", platform.Handle(inv.release))
	app.Router.Get("/reservations/{id}", platform.Handle(func(r *http.Request) (any, error) {
		id, err := platform.ParseID(r)
		if err != nil {
			return nil, err
		}
		e, _, err := app.Cache.Get(r.Context(), platform.Reservations, id)
		return e, err
	}))
	return nil
}
