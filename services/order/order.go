package main

import (
	"context"
	"net/http"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// body is an order as clients send it; an id in it is ignored. A product id
// given twice is two pieces of it.
type body struct {
	ID         string   `json:"id"`
	CustomerID string   `json:"customer_id"`
	ProductIDs []string `json:"product_ids"`
}

type orders struct {
	app          *platform.App
	inventoryURL string
}

func wire(app *platform.App, inventoryURL string) {
	o := orders{app: app, inventoryURL: inventoryURL}
	r := app.Router
	r.Get("/orders/unbilled", platform.Handle(o.unbilled))
	platform.Queries(r, app.Cache, platform.Orders)
	for _, p := range []string{"/order", "/orders"} {
		r.Post(p, platform.Handle(o.create))
		r.Put(p+"/{id}", platform.Handle(o.update))
		r.Delete(p+"/{id}", platform.Handle(o.remove))
	}
}

// check validates an order: its customer and every product must exist.
func (o orders) check(ctx context.Context, b body) (entitycache.Entity, error) {
	customerID, err := platform.CheckUUID("customer_id", b.CustomerID)
	if err != nil {
		return nil, err
	}
	if len(b.ProductIDs) == 0 {
		return nil, platform.Errorf(http.StatusBadRequest, "product_ids must not be empty")
	}
	products := make([]any, len(b.ProductIDs))
	for i, p := range b.ProductIDs {
		if b.ProductIDs[i], err = platform.CheckUUID("product_ids", p); err != nil {
			return nil, err
		}
		products[i] = b.ProductIDs[i]
	}
	customer, _, err := o.app.Cache.Get(ctx, platform.Customers.Kind, customerID)
	if err != nil {
		return nil, err
	}
	if customer == nil {
		return nil, platform.Errorf(http.StatusNotFound, "no customer %s", customerID)
	}
	found, _, err := o.app.Cache.GetMany(ctx, platform.Products.Kind, b.ProductIDs...)
	if err != nil {
		return nil, err
	}
	for i, p := range found {
		if p == nil {
			return nil, platform.Errorf(http.StatusNotFound, "no product %s", b.ProductIDs[i])
		}
	}
	return entitycache.Entity{"customer_id": customerID, "product_ids": products}, nil
}

// hold sets the stock reserved for an order to its products; none releases it.
func (o orders) hold(ctx context.Context, orderID string, products []any) error {
	if len(products) == 0 {
		return platform.Call(ctx, o.app.HTTP, http.MethodDelete, o.inventoryURL+"/reservations/"+orderID, nil, nil)
	}
	return platform.Call(ctx, o.app.HTTP, http.MethodPut, o.inventoryURL+"/reservations/"+orderID,
		map[string]any{"product_ids": products}, nil)
}

// restore sets the stock held for an order back to what the recorded order
// needs (nothing, if it was not recorded), after a failure and whatever
// became of the request that caused it.
func (o orders) restore(ctx context.Context, orderID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.app.Config.RequestTimeout)
	defer cancel()
	ord, _, err := o.app.Cache.Get(ctx, platform.Orders.Kind, orderID)
	var products []any
	if ord != nil {
		products = ord["product_ids"].([]any)
	}
	if err == nil {
		err = o.hold(ctx, orderID, products)
	}
	if err != nil {
		o.app.Log.Error("stock held for an order could not be set back", "order", orderID, "err", err)
	}
}

// create records one order or a batch, all or nothing: stock is reserved for
// each, then all are recorded in one step; any failure releases what was
// reserved.
func (o orders) create(r *http.Request) (any, error) {
	ctx := r.Context()
	bodies, err := platform.DecodeOneOrMany[body](r)
	if err != nil {
		return nil, err
	}
	changes := make([]entitycache.Change, len(bodies))
	for i, b := range bodies {
		ent, err := o.check(ctx, b)
		if err != nil {
			return nil, err
		}
		id := uuid.NewString()
		ent["id"] = id
		changes[i] = entitycache.Change{Kind: platform.Orders.Kind, Type: "order_created", ID: id, Entity: ent,
			Expected: eventstore.NoEntity, Meta: platform.TraceMeta(ctx)}
	}
	ids := make([]string, 0, len(changes))
	release := func() {
		for _, id := range ids {
			o.restore(ctx, id)
		}
	}
	for _, ch := range changes {
		if err := o.hold(ctx, ch.ID, ch.Entity["product_ids"].([]any)); err != nil {
			release()
			return nil, err
		}
		ids = append(ids, ch.ID)
	}
	if _, err := o.app.Cache.Commit(ctx, changes...); err != nil {
		release()
		return nil, err
	}
	return ids, nil
}

// update replaces an order, swapping its reservation for the new products.
func (o orders) update(r *http.Request) (any, error) {
	ctx := r.Context()
	id, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	var b body
	if err := platform.Decode(r, &b); err != nil {
		return nil, err
	}
	ent, err := o.check(ctx, b)
	if err != nil {
		return nil, err
	}
	ent["id"] = id
	held := false
	err = platform.Change(ctx, o.app.Cache, platform.Orders, id, "order_updated", func(entitycache.Entity) (entitycache.Entity, error) {
		held = true
		return ent, o.hold(ctx, id, ent["product_ids"].([]any))
	})
	if err != nil && held {
		o.restore(ctx, id)
	}
	return true, err
}

// remove deletes an order, then releases its stock.
func (o orders) remove(r *http.Request) (any, error) {
	id, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	if err := platform.Change(r.Context(), o.app.Cache, platform.Orders, id, "order_deleted", nil); err != nil {
		return nil, err
	}
	return true, o.hold(r.Context(), id, nil)
}

// unbilled lists the orders that have no billing yet.
func (o orders) unbilled(r *http.Request) (any, error) {
	all, err := o.app.Cache.List(r.Context(), platform.Orders.Kind)
	if err != nil {
		return nil, err
	}
	billings, err := o.app.Cache.List(r.Context(), platform.Billings.Kind)
	if err != nil {
		return nil, err
	}
	billed := map[any]bool{}
	for _, b := range billings {
		billed[b["order_id"]] = true
	}
	out := []entitycache.Entity{}
	for _, ord := range all {
		if !billed[ord["id"]] {
			out = append(out, ord)
		}
	}
	return out, nil
}
