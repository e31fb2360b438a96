package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// body is a billing as clients send it; an id in it is ignored.
type body struct {
	ID      string `json:"id"`
	OrderID string `json:"order_id"`
	Done    *bool  `json:"done"`
}

// config is the consumer's config and where the msg service listens.
type config struct {
	platform.Consuming
	MsgURL string `envconfig:"MSG_URL" default:"http://127.0.0.1:8086"`
}

func wire(app *platform.App, cfg config) error {
	shop.Billings.Queries(app.Router, app.Cache)
	platform.Commands(app, platform.Rules[body, shop.Billing]{
		Resource: shop.Billings,
		Build: func(ctx context.Context, id string, b body) (shop.Billing, error) {
			return check(ctx, app.Cache, id, b)
		},
	})
	return platform.Consume(app, cfg.Consuming, "billing", []string{shop.Orders.StreamName(), shop.Billings.StreamName()},
		routes(mails{shop.MailerOf(app, cfg.MsgURL)}))
}

func routes(m mails) *eventstore.Router {
	r := eventstore.NewRouter()
	eventstore.On(r, shop.OrderCreated, m.paymentRequest)
	eventstore.On(r, shop.BillingCreated, m.receipt)
	eventstore.On(r, shop.BillingUpdated, m.receipt)
	return r
}

func check(ctx context.Context, cache *entitycache.Cache, id string, b body) (shop.Billing, error) {
	bill, err := shop.NewBilling(b.OrderID, b.Done != nil && *b.Done)
	if err != nil {
		return bill, err
	}
	if id != "" && id != bill.ID {
		return bill, platform.Errorf(http.StatusBadRequest, "billing %s is not the billing of order %s: its order cannot change", id, bill.OrderID)
	}
	order, _, err := shop.Orders.Get(ctx, cache, bill.OrderID)
	if err == nil && order == nil {
		err = &entitycache.NotFoundError{Kind: shop.Orders.One, ID: bill.OrderID}
	}
	return bill, err
}

// mails are the mails of billing, to the order's customer. Every error
// leaves the event to be delivered again, and after MAX_DELIVERIES
// dead-lettered; a customer or order that is gone is a skip.
type mails struct{ shop.Mailer }

// paymentRequest asks for the payment of a new order.
func (m mails) paymentRequest(ctx context.Context, e eventstore.Event, order shop.Order) error {
	customer, err := m.CustomerOf(ctx, order)
	if err != nil {
		return err
	}
	total, err := m.total(ctx, order)
	if err != nil {
		return err
	}
	return m.Mail(ctx, e.ID, "payment-request", customer, fmt.Sprintf("Please pay for your order %s: %s.", order.ID, total))
}

// receipt confirms the payment of an order once its billing is done, when
// it is created done or updated to done. It is sent once per billing, not
// per event: setting done again, or an update handled twice, mails nothing
// more. A billing whose order is gone has nothing to confirm.
func (m mails) receipt(ctx context.Context, e eventstore.Event, bill shop.Billing) error {
	if !bill.Done {
		return nil
	}
	order, _, err := shop.Orders.Get(ctx, m.Cache, bill.OrderID)
	if err == nil && order == nil {
		err = eventstore.Skip(fmt.Errorf("order %q of billing %s is unknown", bill.OrderID, bill.ID))
	}
	if err != nil {
		return err
	}
	customer, err := m.CustomerOf(ctx, *order)
	if err != nil {
		return err
	}
	total, err := m.total(ctx, *order)
	if err != nil {
		return err
	}
	return m.Mail(ctx, bill.ID, "receipt", customer, fmt.Sprintf("Receipt for your order %s: billing %s, %s, paid.", bill.OrderID, bill.ID, total))
}

// total is what an order costs at the products' prices now, "total 7.70". A
// product deleted since has no price: it is left out, and named, so that
// the customer sees why the total is less.
func (m mails) total(ctx context.Context, order shop.Order) (string, error) {
	products, _, err := shop.Products.GetMany(ctx, m.Cache, order.ProductIDs...)
	if err != nil {
		return "", err
	}
	var cents int64
	var gone []string
	for i, p := range products {
		switch {
		case p != nil:
			cents += p.Price
		case !slices.Contains(gone, order.ProductIDs[i]):
			gone = append(gone, order.ProductIDs[i])
		}
	}
	text := fmt.Sprintf("total %d.%02d", cents/100, cents%100)
	for _, id := range gone {
		text += ", without product " + id + ", no longer sold"
	}
	return text, nil
}
