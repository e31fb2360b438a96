// Command billing owns the billings, one per order: create, update, delete.
// It reads the order and billing streams through the consumer group
// "billing" and mails a payment request for each new order and a receipt for
// each new billing.
package main

import "github.com/ordershop/ordershop/internal/platform"

type config struct {
	platform.Config
	platform.Consuming
}

func main() {
	var cfg config
	// cfg.wire has a pointer receiver, so it reads cfg after Main loaded it.
	platform.Main("billing", &cfg, &cfg.Config, cfg.wire)
}
