package main

import (
	"context"
	"net/http"
	"slices"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// body is an inventory item as clients send it; an id in it is ignored.
type body struct {
	ID        string `json:"id"`
	ProductID string `json:"product_id"`
	Amount    *int64 `json:"amount"` // required, so a pointer
}

type inventory struct {
	cache *entitycache.Cache
}

func (inv inventory) build(ctx context.Context, id string, b body) (shop.Inventory, error) {
	if b.Amount == nil {
		return shop.Inventory{}, platform.Errorf(http.StatusBadRequest, "amount is required")
	}
	item, err := shop.NewInventory(b.ProductID, *b.Amount)
	if err != nil {
		return item, err
	}
	if id != "" && item.ID != id {
		return item, platform.Errorf(http.StatusBadRequest, "inventory %s is not the inventory of product %s", id, item.ProductID)
	}
	product, _, err := shop.Products.Get(ctx, inv.cache, item.ProductID)
	if err == nil && product == nil {
		err = &entitycache.NotFoundError{Kind: shop.Products.One, ID: item.ProductID}
	}
	return item, err
}

// unreserved refuses to delete an inventory while a reservation holds its
// product: an inventory created again for it would get the held pieces
// back, which it never had, when the order lets them go. It reads every
// reservation (two round trips, all their pieces), which is fine for a
// delete that operators make now and then; a count per product would need
// an entity kind of its own. Every reservation of the product changes the
// inventory too, so the delete, expecting the inventory's version it read
// before, conflicts with one that lands meanwhile and checks again.
func (inv inventory) unreserved(ctx context.Context, item shop.Inventory) error {
	all, err := shop.Reservations.List(ctx, inv.cache)
	if err != nil {
		return err
	}
	for _, res := range all {
		if slices.Contains(res.ProductIDs, item.ProductID) {
			return platform.Errorf(http.StatusConflict, "inventory %s is reserved by order %s: delete it once no order holds its product", item.ID, res.ID)
		}
	}
	return nil
}

func wire(app *platform.App, cfg config) error {
	inv := inventory{cache: app.Cache}
	shop.Inventories.Queries(app.Router, app.Cache)
	platform.Commands(app, platform.Rules[body, shop.Inventory]{Resource: shop.Inventories, Build: inv.build, CheckDelete: inv.unreserved})
	app.Router.Put("/reservations/{id}", platform.Handle(inv.reserve))
	app.Router.Delete("/reservations/{id}", platform.Handle(inv.release))
	app.Router.Get("/reservations/{id}", platform.Handle(func(r *http.Request) (any, error) {
		id, err := platform.ParseID(r)
		if err != nil {
			return nil, err
		}
		res, _, err := shop.Reservations.Get(r.Context(), app.Cache, id)
		return res, err
	}))
	return reconcile(app, inv, cfg)
}
