// Command inventory owns the stock of each product and reserves it for
// orders, all or nothing.
package main

import "github.com/ordershop/ordershop/internal/platform"

type config struct {
	platform.Config
}

func main() {
	var cfg config
	platform.Main("inventory", &cfg, &cfg.Config, wire)
}
