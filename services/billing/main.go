// Command billing owns the billings, one per order: create, update, delete.
// It reads the order and billing streams through the consumer group
// "billing" and mails a payment request for each new order and a receipt for
// each new billing.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

func main() { platform.Run(context.Background(), "billing", shop.Domain, wire) }
