// Command msg sends mails, once per idempotency key, and lists the mails it
// sent.
package main

import "github.com/ordershop/ordershop/internal/platform"

type config struct {
	platform.Config
}

func main() {
	var cfg config
	platform.Main("msg", &cfg, &cfg.Config, wire)
}
