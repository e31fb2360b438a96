// Command order owns the orders. Creating one reserves its stock at the
// inventory service first; updating swaps the reservation; deleting releases it.
package main

import "github.com/ordershop/ordershop/internal/platform"

type config struct {
	platform.Config
	InventoryURL string `envconfig:"INVENTORY_URL" default:"http://127.0.0.1:8083"`
}

func main() {
	var cfg config
	platform.Main("order", &cfg, &cfg.Config, func(app *platform.App) error {
		wire(app, cfg.InventoryURL)
		return nil
	})
}
