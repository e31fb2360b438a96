package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
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

// orders records orders and keeps the stock held for each in step: the
// saga of an order is "reserve, then record; on failure, set the stock held
// back to what is recorded".
type orders struct {
	cache   *entitycache.Cache
	stock   Stock
	log     *slog.Logger
	timeout time.Duration // of the compensation after a failure
	batch   int           // the most orders one POST creates
}

func routes(app *platform.App, o orders) {
	r := app.Router
	o.batch = app.Config.MaxBatch
	r.Get("/orders/unbilled", platform.List(o.unbilled))
	shop.Orders.Queries(r, app.Cache)
	for _, p := range shop.Orders.Paths("") {
		r.Post(p, platform.Handle(o.create))
	}
	for _, p := range shop.Orders.Paths("/{id}") {
		r.Put(p, platform.Handle(o.update))
		r.Delete(p, platform.Handle(o.remove))
	}
}

// build validates an order and builds it: its customer and every product must exist.
func (o orders) build(ctx context.Context, b body) (shop.Order, error) {
	ord, err := shop.NewOrder(b.CustomerID, b.ProductIDs)
	if err != nil {
		return ord, err
	}
	customer, _, err := shop.Customers.Get(ctx, o.cache, ord.CustomerID)
	if err != nil {
		return ord, err
	}
	if customer == nil {
		return ord, &entitycache.NotFoundError{Kind: shop.Customers.One, ID: ord.CustomerID}
	}
	found, _, err := shop.Products.GetMany(ctx, o.cache, ord.ProductIDs...)
	if err != nil {
		return ord, err
	}
	for i, p := range found {
		if p == nil {
			return ord, &entitycache.NotFoundError{Kind: shop.Products.One, ID: ord.ProductIDs[i]}
		}
	}
	return ord, nil
}

// recordBy is when an order whose stock is reserved now must be recorded by,
// or never: its append carries it as a deadline that Redis checks, and its
// reservation keeps the stock until then (plus the inventory's grace), so
// that a slow record cannot land after the stock went to another order.
func (o orders) recordBy(r *http.Request) (time.Time, context.Context) {
	by := time.Now().Add(o.timeout)
	return by, eventstore.AppendBy(r.Context(), by)
}

// create records one order or a batch, all or nothing: stock is reserved for
// each, then all are recorded in one step; any failure releases what was
// reserved.
func (o orders) create(r *http.Request) (any, error) {
	by, ctx := o.recordBy(r)
	bodies, err := platform.DecodeOneOrMany[body](r, o.batch)
	if err != nil {
		return nil, err
	}
	changes := make([]entitycache.Change, len(bodies))
	ords := make([]shop.Order, len(bodies))
	for i, b := range bodies {
		if ords[i], err = o.build(ctx, b); err != nil {
			return nil, err
		}
		ords[i].ID = shop.Orders.NewID(ctx, o.cache, ords[0].ID, i) // one partition: the batch commits whole
		changes[i] = shop.Orders.Change(shop.OrderCreated, ords[i], eventstore.NoEntity)
	}
	ids := make([]string, 0, len(ords))
	for _, ord := range ords {
		// On the list before the call: a reservation that was made but whose
		// answer was lost is set back too.
		ids = append(ids, ord.ID)
		if err := o.stock.Reserve(ctx, ord.ID, ord.ProductIDs, by); err != nil {
			o.restore(ctx, ids...)
			return nil, err
		}
	}
	if _, err := o.cache.Commit(ctx, changes...); err != nil {
		o.restore(ctx, ids...)
		return nil, err
	}
	return ids, nil
}

// update replaces an order: it swaps the reservation for the new products,
// then records the order; a failure sets the reservation back.
func (o orders) update(r *http.Request) (any, error) {
	ctx := r.Context()
	id, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	cur, err := o.changeable(r, id)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, &entitycache.NotFoundError{Kind: shop.Orders.One, ID: id}
	}
	var b body
	if err := platform.Decode(r, &b); err != nil {
		return nil, err
	}
	ord, err := o.build(ctx, b)
	if err != nil {
		return nil, err
	}
	ord.ID = id
	by, ctx := o.recordBy(r)
	if err := o.stock.Reserve(ctx, id, ord.ProductIDs, by); err != nil {
		o.restore(ctx, id)
		return nil, err
	}
	err = platform.UpdateIfMatch(r.WithContext(ctx), o.cache, shop.Orders, id, shop.OrderUpdated, func(shop.Order) (shop.Order, error) { return ord, nil })
	if err != nil {
		o.restore(ctx, id)
	}
	return true, err
}

// remove deletes an order, then releases its stock. Once the delete has
// committed it answers true even if the release fails: the inventory
// follows the order's deleted event and releases it then. An order that is
// gone already is 404, after a release all the same, for a delete whose
// release failed before.
func (o orders) remove(r *http.Request) (any, error) {
	id, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	if _, err := o.changeable(r, id); err != nil {
		return nil, err
	}
	err = platform.UpdateIfMatch(r, o.cache, shop.Orders, id, shop.OrderDeleted, func(cur shop.Order) (shop.Order, error) { return cur, nil })
	if err != nil && !errors.Is(err, entitycache.ErrNotFound) {
		return nil, err
	}
	if rerr := o.stock.Release(r.Context(), id); rerr != nil {
		o.log.Warn("stock of a deleted order not released; the inventory releases it when it follows the deletion", "order", id, "err", rerr)
	}
	return true, err
}

// changeable refuses (409) to change or delete an order that is billed: its
// bill and mails state what it holds. An If-Match that does not name the
// order's version is 412, before any stock moves. It returns the order as
// read, nil for an unknown one: the caller decides what that means.
func (o orders) changeable(r *http.Request, id string) (*shop.Order, error) {
	ord, version, err := shop.Orders.Get(r.Context(), o.cache, id)
	if err != nil || ord == nil {
		return nil, err
	}
	if err := platform.CheckIfMatch(r, shop.Orders.One, id, version); err != nil {
		return nil, err
	}
	bill, _, err := shop.Billings.Get(r.Context(), o.cache, shop.BillingID(id))
	if err == nil && bill != nil {
		err = platform.Errorf(http.StatusConflict, "order %s is billed (billing %s): it can no longer change", id, bill.ID)
	}
	return ord, err
}

// restore sets the stock held for orders back to what the recorded orders
// need (nothing, for one not recorded), after a failure and whatever became
// of the request that caused it.
func (o orders) restore(ctx context.Context, ids ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
	defer cancel()
	for _, id := range ids {
		ord, _, err := shop.Orders.Get(ctx, o.cache, id)
		switch {
		case err != nil:
		case ord == nil:
			err = o.stock.Release(ctx, id)
		default:
			err = o.stock.Reserve(ctx, id, ord.ProductIDs, time.Time{})
		}
		if err != nil {
			o.log.Error("stock held for an order could not be set back", "order", id, "err", err)
		}
	}
}

// unbilled lists the orders of a page that have no billing yet. A billing's
// id derives from its order's, so it is looked up, not searched for: a page
// costs what its orders cost, however many billings there are. It may hold
// fewer orders than its limit, even none, and still have a next one.
func (o orders) unbilled(r *http.Request, p entitycache.Page) ([]shop.Order, string, error) {
	page, next, err := shop.Orders.ListPage(r.Context(), o.cache, p)
	if err != nil {
		return nil, "", err
	}
	ids := make([]string, len(page))
	for i, ord := range page {
		ids[i] = shop.BillingID(ord.ID)
	}
	billings, _, err := shop.Billings.GetMany(r.Context(), o.cache, ids...)
	if err != nil {
		return nil, "", err
	}
	out := []shop.Order{}
	for i, ord := range page {
		if billings[i] == nil {
			out = append(out, ord)
		}
	}
	return out, next, nil
}
