// Command crm mails customers: a welcome when they sign up, a goodbye when
// they leave, and a thank-you for each order. It reads the customer and order
// streams through the consumer group "crm", so it catches up after a stop.
package main

import "github.com/ordershop/ordershop/internal/platform"

type config struct {
	platform.Config
	platform.Consuming
}

func main() {
	var cfg config
	// cfg.wire has a pointer receiver, so it reads cfg after Main loaded it.
	platform.Main("crm", &cfg, &cfg.Config, cfg.wire)
}
