// Command msg sends mails, once per idempotency key, and lists the mails it
// sent.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

func main() { platform.Run(context.Background(), "msg", shop.Domain, wire) }
