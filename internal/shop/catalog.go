// Package shop is OrderShop's domain: its entities with their validation,
// the catalog of entity kinds and event types, the mails, and the errors the
// domain gives. The services build on it; internal/platform is the plumbing
// underneath and knows nothing of the shop.
package shop

import (
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// Event types, one catalog for every stream.
const (
	CustomerCreated = "customer_created"
	CustomerUpdated = "customer_updated"
	CustomerDeleted = "customer_deleted"

	ProductCreated = "product_created"
	ProductUpdated = "product_updated"
	ProductDeleted = "product_deleted"

	InventoryCreated = "inventory_created"
	InventoryUpdated = "inventory_updated"
	InventoryDeleted = "inventory_deleted"

	ReservationCreated = "reservation_created"
	ReservationUpdated = "reservation_updated"
	ReservationDeleted = "reservation_deleted"

	OrderCreated = "order_created"
	OrderUpdated = "order_updated"
	OrderDeleted = "order_deleted"

	BillingCreated = "billing_created"
	BillingUpdated = "billing_updated"
	BillingDeleted = "billing_deleted"

	EmailSent      = "email_sent"
	EmailForgotten = "email_forgotten"
)

// The entity kinds with their routes. Services read each other's kinds from
// the cache; only the owner writes them.
var (
	Customers = platform.Resource[Customer]{Kind: entitycache.Kind[Customer]{Name: "customer",
		Created: CustomerCreated, Updated: CustomerUpdated, Deleted: CustomerDeleted}, One: "customer", Many: "customers"}
	Products = platform.Resource[Product]{Kind: entitycache.Kind[Product]{Name: "product",
		Created: ProductCreated, Updated: ProductUpdated, Deleted: ProductDeleted}, One: "product", Many: "products"}
	// Stock is reserved for an order's products in one step, so every
	// inventory and reservation is in one partition of the inventory stream.
	Inventories = platform.Resource[Inventory]{Kind: entitycache.Kind[Inventory]{Name: "inventory",
		Created: InventoryCreated, Updated: InventoryUpdated, Deleted: InventoryDeleted, OnePartition: true}, One: "inventory", Many: "inventory"}
	Orders = platform.Resource[Order]{Kind: entitycache.Kind[Order]{Name: "order",
		Created: OrderCreated, Updated: OrderUpdated, Deleted: OrderDeleted}, One: "order", Many: "orders"}
	Billings = platform.Resource[Billing]{Kind: entitycache.Kind[Billing]{Name: "billing",
		Created: BillingCreated, Updated: BillingUpdated, Deleted: BillingDeleted}, One: "billing", Many: "billings"}
	// Mails are indexed by recipient, for GET /emails?to=. Their records
	// are forgotten after a while (msg's MAIL_RETENTION); the events stay.
	Emails = platform.Resource[Email]{Kind: entitycache.Kind[Email]{Name: "email", Created: EmailSent,
		Deleted: EmailForgotten, Index: "to"}, One: "email", Many: "emails"}

	// Reservations live in the inventory's stream, so that stock and
	// reservation change in one step. Clients do not reach them.
	Reservations = entitycache.Kind[Reservation]{Name: "reservation", Stream: "inventory",
		Created: ReservationCreated, Updated: ReservationUpdated, Deleted: ReservationDeleted, OnePartition: true}
)

// Collections are the kinds the gateway lists and /report reports.
var Collections = []platform.Collection{Customers, Products, Inventories, Orders, Billings}

// Streams are the kinds that live in each stream, for rebuilding the cache.
var Streams = [][]entitycache.Projection{
	{Customers.Kind}, {Products.Kind}, {Inventories.Kind, Reservations}, {Orders.Kind}, {Billings.Kind}, {Emails.Kind},
}
