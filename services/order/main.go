// Command order owns the orders. Creating one reserves its stock at the
// inventory service first; updating swaps the reservation; deleting releases it.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

type config struct {
	InventoryURL string `envconfig:"INVENTORY_URL" default:"http://127.0.0.1:8083"`
}

func main() { platform.Run(context.Background(), "order", shop.Domain, wire) }

func wire(app *platform.App, cfg config) error {
	routes(app, orders{cache: app.Cache, stock: inventoryClient{http: app.HTTP, url: cfg.InventoryURL},
		log: app.Log, timeout: app.Config.RequestTimeout})
	return nil
}
