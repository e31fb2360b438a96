package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// body is a billing as clients send it; an id in it is ignored.
type body struct {
	ID      string `json:"id"`
	OrderID string `json:"order_id"`
	Done    *bool  `json:"done"`
}

// billingID is the one billing an order may have: a second create for the
// order finds it taken and is a 409.
func billingID(orderID string) string { return platform.DerivedID("billing", orderID) }

func check(cache *entitycache.Cache) func(context.Context, string, body) (entitycache.Entity, error) {
	return func(ctx context.Context, id string, b body) (entitycache.Entity, error) {
		if b.OrderID == "" {
			return nil, platform.Errorf(http.StatusBadRequest, "order_id is required")
		}
		orderID, err := platform.CheckUUID("order_id", b.OrderID)
		if err != nil {
			return nil, err
		}
		if id != "" && id != billingID(orderID) {
			return nil, platform.Errorf(http.StatusBadRequest, "billing %s is not the billing of order %s: its order cannot change", id, orderID)
		}
		order, _, err := cache.Get(ctx, platform.Orders.Kind, orderID)
		if err != nil {
			return nil, err
		}
		if order == nil {
			return nil, platform.Errorf(http.StatusNotFound, "no order %s", orderID)
		}
		return entitycache.Entity{"order_id": orderID, "done": b.Done != nil && *b.Done}, nil
	}
}

func (c *config) wire(app *platform.App) error {
	platform.Queries(app.Router, app.Cache, platform.Billings)
	platform.Commands(app.Router, app.Cache, platform.Rules[body]{
		Resource: platform.Billings, Check: check(app.Cache),
		ID: func(e entitycache.Entity) string { return billingID(e["order_id"].(string)) },
	})
	h := &handler{app: app, mailer: platform.Mailer{HTTP: app.HTTP, URL: c.MsgURL}}
	return platform.Consume(app, c.Consuming, "billing", []string{"order", "billing"}, h.handle)
}

// handler turns events into mails, which msg sends.
type handler struct {
	app    *platform.App
	mailer platform.Mailer
}

// handle mails a payment request for a new order and a receipt for a new
// billing, to the order's customer. Every error leaves the event to be
// delivered again, and after MAX_DELIVERIES dead-lettered.
func (h *handler) handle(ctx context.Context, e eventstore.Event) error {
	if e.Type != "order_created" && e.Type != "billing_created" {
		return nil
	}
	ent, _, err := entitycache.Decode(e)
	if err != nil {
		return err
	}
	if e.Type == "order_created" {
		customer, err := platform.CustomerOf(ctx, h.app.Cache, ent)
		if err != nil {
			return err
		}
		return h.mailer.Mail(ctx, e, "payment-request", customer, fmt.Sprintf("Please pay for your order %s.", e.EntityID))
	}
	orderID, _ := ent["order_id"].(string)
	order, _, err := h.app.Cache.Get(ctx, platform.Orders.Kind, orderID)
	if err == nil && order == nil {
		err = fmt.Errorf("order %q of billing %s is unknown", orderID, e.EntityID)
	}
	if err != nil {
		return err
	}
	customer, err := platform.CustomerOf(ctx, h.app.Cache, order)
	if err != nil {
		return err
	}
	return h.mailer.Mail(ctx, e, "receipt", customer, fmt.Sprintf("Receipt for your order %s: billing %s.", orderID, e.EntityID))
}
