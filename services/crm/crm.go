package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func (c *config) wire(app *platform.App) error {
	h := &handler{app: app, mailer: platform.Mailer{HTTP: app.HTTP, URL: c.MsgURL}}
	return platform.Consume(app, c.Consuming, "crm", []string{"customer", "order"}, h.handle)
}

// handler turns events into mails, which msg sends.
type handler struct {
	app    *platform.App
	mailer platform.Mailer
}

// handle mails the customer an event concerns. Every error leaves the event
// to be delivered again, and after MAX_DELIVERIES dead-lettered; that is also
// the fate of an event that cannot succeed, so that an operator sees it.
func (h *handler) handle(ctx context.Context, e eventstore.Event) error {
	switch e.Type {
	case "customer_created", "customer_deleted", "order_created":
	default:
		return nil
	}
	ent, _, err := entitycache.Decode(e)
	if err != nil {
		return err
	}
	name, _ := ent["name"].(string)
	switch e.Type {
	case "customer_created":
		return h.mailer.Mail(ctx, e, "welcome", ent, fmt.Sprintf("Welcome to OrderShop, %s!", name))
	case "customer_deleted":
		return h.mailer.Mail(ctx, e, "goodbye", ent, fmt.Sprintf("Goodbye, %s: your OrderShop account is closed.", name))
	}
	customer, err := platform.CustomerOf(ctx, h.app.Cache, ent)
	if err != nil {
		return err
	}
	products, err := productList(ctx, h.app.Cache, ent)
	if err != nil {
		return err
	}
	return h.mailer.Mail(ctx, e, "thank-you", customer, fmt.Sprintf("Thank you for your order %s: %s.", e.EntityID, products))
}

// productList names an order's products with their quantities, "2 x Apple,
// 1 x Pear", in the order's order. A product deleted since is named by id:
// the thanks matter more than the name.
func productList(ctx context.Context, cache *entitycache.Cache, order entitycache.Entity) (string, error) {
	items, _ := order["product_ids"].([]any)
	var ids []string
	count := map[string]int{}
	for _, v := range items {
		id, _ := v.(string)
		if count[id] == 0 {
			ids = append(ids, id)
		}
		count[id]++
	}
	products, _, err := cache.GetMany(ctx, platform.Products.Kind, ids...)
	if err != nil {
		return "", err
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		name, _ := products[i]["name"].(string)
		if name == "" {
			name = "product " + id
		}
		parts[i] = fmt.Sprintf("%d x %s", count[id], name)
	}
	return strings.Join(parts, ", "), nil
}
