package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// config is the consumer's config and where the msg service listens.
type config struct {
	platform.Consuming
	MsgURL string `envconfig:"MSG_URL" default:"http://127.0.0.1:8086"`
}

func wire(app *platform.App, cfg config) error {
	return platform.Consume(app, cfg.Consuming, "crm", []string{shop.Customers.StreamName(), shop.Orders.StreamName()},
		routes(mails{shop.MailerOf(app, cfg.MsgURL)}))
}

func routes(m mails) *eventstore.Router {
	r := eventstore.NewRouter()
	eventstore.On(r, shop.CustomerCreated, m.welcome)
	eventstore.On(r, shop.CustomerDeleted, m.goodbye)
	eventstore.On(r, shop.OrderCreated, m.thankYou)
	return r
}

// mails are the mails of crm, to the customer an event concerns. Every
// error leaves the event to be delivered again, and after MAX_DELIVERIES
// dead-lettered; that is also the fate of an event that cannot succeed, so
// that an operator sees it.
type mails struct{ shop.Mailer }

func (m mails) welcome(ctx context.Context, e eventstore.Event, c shop.Customer) error {
	return m.Mail(ctx, e.ID, "welcome", c, fmt.Sprintf("Welcome to OrderShop, %s!", c.Name))
}

func (m mails) goodbye(ctx context.Context, e eventstore.Event, c shop.Customer) error {
	return m.Mail(ctx, e.ID, "goodbye", c, fmt.Sprintf("Goodbye, %s: your OrderShop account is closed.", c.Name))
}

func (m mails) thankYou(ctx context.Context, e eventstore.Event, order shop.Order) error {
	customer, err := m.CustomerOf(ctx, order)
	if err != nil {
		return err
	}
	products, err := m.productList(ctx, order)
	if err != nil {
		return err
	}
	return m.Mail(ctx, e.ID, "thank-you", customer, fmt.Sprintf("Thank you for your order %s: %s.", order.ID, products))
}

// productList names an order's products with their quantities, "2 x Apple,
// 1 x Pear", in the order's order. A product deleted since is named by id:
// the thanks matter more than the name.
func (m mails) productList(ctx context.Context, order shop.Order) (string, error) {
	var ids []string
	count := map[string]int{}
	for _, id := range order.ProductIDs {
		if count[id] == 0 {
			ids = append(ids, id)
		}
		count[id]++
	}
	products, _, err := shop.Products.GetMany(ctx, m.Cache, ids...)
	if err != nil {
		return "", err
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		name := "product " + id
		if products[i] != nil && products[i].Name != "" {
			name = products[i].Name
		}
		parts[i] = fmt.Sprintf("%d x %s", count[id], name)
	}
	return strings.Join(parts, ", "), nil
}
