// Command crm mails customers: a welcome when they sign up, a goodbye when
// they leave, and a thank-you for each order. It reads the customer and order
// streams through the consumer group "crm", so it catches up after a stop.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

func main() { platform.Run(context.Background(), "crm", shop.Domain, wire) }
