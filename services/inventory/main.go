// Command inventory owns the stock of each product and reserves it for
// orders, all or nothing.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

func main() { platform.Run(context.Background(), "inventory", shop.Domain, wire) }
