package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

// A reservation is the stock held for one order: its product ids, a repeated
// id holding one more piece. It lives in the inventory's stream, so the
// reservation and the stock it takes change in one atomic commit.

type reservationBody struct {
	ProductIDs []string `json:"product_ids"`
}

// reserve sets the stock held for an order (PUT /reservations/{order id}) to
// its product ids: it takes what the new list holds more than the old one and
// gives back the rest, all or nothing. Out of stock is 409.
func (inv inventory) reserve(r *http.Request) (any, error) {
	orderID, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	var b reservationBody
	if err := platform.Decode(r, &b); err != nil {
		return nil, err
	}
	if len(b.ProductIDs) == 0 {
		return nil, platform.Errorf(http.StatusBadRequest, "product_ids must not be empty")
	}
	for i, p := range b.ProductIDs {
		if b.ProductIDs[i], err = platform.CheckUUID("product_ids", p); err != nil {
			return nil, err
		}
	}
	return true, inv.hold(r.Context(), orderID, b.ProductIDs)
}

// release gives back all the stock held for an order (DELETE
// /reservations/{order id}). Releasing twice gives back once.
func (inv inventory) release(r *http.Request) (any, error) {
	orderID, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	return true, inv.hold(r.Context(), orderID, nil)
}

// hold makes the stock held for an order what productIDs need.
func (inv inventory) hold(ctx context.Context, orderID string, productIDs []string) error {
	return entitycache.Retry(ctx, func() error {
		res, resVersion, err := inv.cache.Get(ctx, platform.Reservations, orderID)
		if err != nil {
			return err
		}
		var held []string
		if res != nil {
			for _, p := range res["product_ids"].([]any) {
				held = append(held, p.(string))
			}
		}
		changes, err := inv.restock(ctx, need(productIDs, held))
		if err != nil {
			return err
		}
		change := entitycache.Change{Kind: platform.Reservations, ID: orderID, Expected: resVersion, Meta: platform.TraceMeta(ctx),
			Entity: entitycache.Entity{"id": orderID, "product_ids": toAny(productIDs)}}
		switch {
		case res == nil && len(productIDs) == 0, slices.Equal(held, productIDs):
			return nil // it holds what is wanted already
		case res == nil:
			change.Type = "reservation_created"
		case len(productIDs) == 0:
			change.Type, change.Entity = "reservation_deleted", res
		default:
			change.Type = "reservation_updated"
		}
		_, err = inv.cache.Commit(ctx, append(changes, change)...)
		return err
	})
}

// need is how many more pieces of each product are wanted than held
// (negative: to give back).
func need(wanted, held []string) map[string]int64 {
	n := map[string]int64{}
	for _, p := range wanted {
		n[p]++
	}
	for _, p := range held {
		n[p]--
	}
	return n
}

// restock returns the inventory changes that take (or give back) the pieces,
// checked against the stock, with the versions read as expected.
func (inv inventory) restock(ctx context.Context, pieces map[string]int64) ([]entitycache.Change, error) {
	var products []string
	for p, n := range pieces {
		if n != 0 {
			products = append(products, p)
		}
	}
	slices.Sort(products)
	ids := make([]string, len(products))
	for i, p := range products {
		ids[i] = inventoryID(p)
	}
	items, versions, err := inv.cache.GetMany(ctx, platform.Inventory.Kind, ids...)
	if err != nil {
		return nil, err
	}
	var changes []entitycache.Change
	for i, p := range products {
		n := pieces[p]
		if items[i] == nil {
			if n > 0 {
				return nil, platform.Errorf(http.StatusConflict, "product %s is out of stock: it has no inventory", p)
			}
			continue // its inventory was deleted: nothing to give back to
		}
		amount, err := items[i]["amount"].(json.Number).Int64()
		if err != nil {
			return nil, fmt.Errorf("inventory %s: amount: %w", ids[i], err)
		}
		if amount < n {
			return nil, platform.Errorf(http.StatusConflict, "product %s is out of stock: %d wanted, %d left", p, n, amount)
		}
		items[i]["amount"] = amount - n
		changes = append(changes, entitycache.Change{Kind: platform.Inventory.Kind, Type: "inventory_updated",
			ID: ids[i], Entity: items[i], Expected: versions[i], Meta: platform.TraceMeta(ctx)})
	}
	return changes, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
