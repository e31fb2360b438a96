// Command product owns the products: create, update, delete.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

func main() { platform.Run(context.Background(), "product", shop.Domain, wire) }
