// Command product owns the products: create, update, delete.
package main

import "github.com/ordershop/ordershop/internal/platform"

type config struct {
	platform.Config
}

func main() {
	var cfg config
	platform.Main("product", &cfg, &cfg.Config, wire)
}
