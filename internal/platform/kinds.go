package platform

import "github.com/ordershop/ordershop/pkg/entitycache"

// Resource is an entity kind with the names of its routes: /customer/{id}
// (One) and /customers/{id} (Many).
type Resource struct {
	Kind      entitycache.Kind
	One, Many string
}

// The entity kinds of OrderShop. Services read each other's kinds from the
// cache; only the owner writes them.
var (
	Customers   = Resource{entitycache.Kind{Name: "customer"}, "customer", "customers"}
	Products    = Resource{entitycache.Kind{Name: "product", Numbers: []string{"price"}}, "product", "products"}
	Inventory   = Resource{entitycache.Kind{Name: "inventory", Numbers: []string{"amount"}}, "inventory", "inventory"}
	Orders      = Resource{entitycache.Kind{Name: "order", Lists: []string{"product_ids"}}, "order", "orders"}
	Billings    = Resource{entitycache.Kind{Name: "billing", Bools: []string{"done"}}, "billing", "billings"}
	Emails      = Resource{entitycache.Kind{Name: "email"}, "email", "emails"}
	Collections = []Resource{Customers, Products, Inventory, Orders, Billings}

	// Reservations are the stock held for each order, in the inventory's
	// stream so that stock and reservation change in one step.
	Reservations = entitycache.Kind{Name: "reservation", Stream: "inventory", Lists: []string{"product_ids"}}
)

// Streams are the kinds that live in each stream, for rebuilding the cache.
var Streams = [][]entitycache.Kind{
	{Customers.Kind}, {Products.Kind}, {Inventory.Kind, Reservations}, {Orders.Kind}, {Billings.Kind}, {Emails.Kind},
}
