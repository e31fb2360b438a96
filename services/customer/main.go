// Command customer owns the customers: create (one or many), update, delete.
package main

import "github.com/ordershop/ordershop/internal/platform"

type config struct {
	platform.Config
}

func main() {
	var cfg config
	platform.Main("customer", &cfg, &cfg.Config, wire)
}
