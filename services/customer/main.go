// Command customer owns the customers: create (one or many), update, delete.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

func main() { platform.Run(context.Background(), "customer", shop.Domain, wire) }
