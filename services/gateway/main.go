// Command gateway is the public API of OrderShop on port 5000: queries are
// answered from the entity cache, commands go to the service that owns the
// entity.
package main

import (
	"context"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

type config struct {
	CustomerURL  string `envconfig:"CUSTOMER_URL" default:"http://127.0.0.1:8081"`
	ProductURL   string `envconfig:"PRODUCT_URL" default:"http://127.0.0.1:8082"`
	InventoryURL string `envconfig:"INVENTORY_URL" default:"http://127.0.0.1:8083"`
	OrderURL     string `envconfig:"ORDER_URL" default:"http://127.0.0.1:8084"`
	BillingURL   string `envconfig:"BILLING_URL" default:"http://127.0.0.1:8085"`
	MsgURL       string `envconfig:"MSG_URL" default:"http://127.0.0.1:8086"`

	// The admin listeners whose /ops routes the gateway's admin listener
	// serves under /ops/crm and /ops/billing.
	CRMAdminURL     string `envconfig:"CRM_ADMIN_URL" default:"http://127.0.0.1:9087"`
	BillingAdminURL string `envconfig:"BILLING_ADMIN_URL" default:"http://127.0.0.1:9085"`

	// How long the owner of a command with an Idempotency-Key may take: its
	// answer is kept for the client's next try with the key, also when the
	// client was answered 503 at REQUEST_TIMEOUT. The services answer within
	// their 30 s write timeout or never.
	CommandTimeout time.Duration `envconfig:"COMMAND_TIMEOUT" default:"30s"`

	// Requests per client address and window on the API; 0 is no limit.
	RateLimit  int           `envconfig:"RATE_LIMIT" default:"100"`
	RateWindow time.Duration `envconfig:"RATE_WINDOW" default:"1s"`

	// How often the dashboard's event stream says it is alive when no event
	// comes: below the idle timeout of any proxy in between.
	EventsHeartbeat time.Duration `envconfig:"EVENTS_HEARTBEAT" default:"5s"`
	// Event streams one client address may have open at once, of the 8 there
	// may be; 0 is no limit but those 8.
	EventsPerClient int `envconfig:"EVENTS_PER_CLIENT" default:"2"`
	// How long an event stream lasts before the gateway ends it; the client
	// reconnects with its Last-Event-ID and misses nothing. 0 is for ever.
	EventsMaxAge time.Duration `envconfig:"EVENTS_MAX_AGE" default:"10m"`
}

func main() { platform.Run(context.Background(), "gateway", shop.Domain, wire) }
