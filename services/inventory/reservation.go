package main

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
)

type reservationBody struct {
	ProductIDs []string `json:"product_ids"`
	RecordBy   int64    `json:"record_by"` // Unix ms, shop.Reservation.RecordBy; 0: none
}

// maxRecordBy is how far ahead an order may be recorded by: a reservation
// asked to wait longer would hold its stock as long, sweeper or not.
const maxRecordBy = 10 * time.Minute

// a hold is what setHeld makes a reservation hold.
type hold struct {
	want []string // the pieces; none: the reservation goes
	// orderVersion is the version of the order event that wants it
	// (reconcile.go), or 0 for a call of the order service and the
	// sweeper, which follow no event: an event no newer than the one the
	// reservation followed last changes nothing.
	orderVersion int64
	recordBy     int64 // shop.Reservation.RecordBy; only ever raised
	// settled, for the sweeper: a reservation changed or waited for after
	// this Unix ms is left as it is.
	settled int64
}

// reserve sets the stock held for an order (PUT /reservations/{order id}) to
// its product ids, for a new order or a changed one: it takes what the new
// list holds more than the old one and gives back the rest, all or nothing.
// Out of stock is 409.
func (inv inventory) reserve(r *http.Request) (any, error) {
	orderID, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	var b reservationBody
	if err := platform.Decode(r, &b); err != nil {
		return nil, err
	}
	want, err := shop.CheckProductIDs(b.ProductIDs)
	if err != nil {
		return nil, err
	}
	if b.RecordBy < 0 || b.RecordBy > time.Now().Add(maxRecordBy).UnixMilli() {
		return nil, platform.Errorf(http.StatusBadRequest, "record_by must be a Unix millisecond within %v from now", maxRecordBy)
	}
	return true, inv.setHeld(r.Context(), orderID, hold{want: want, recordBy: b.RecordBy})
}

// release gives back all the stock held for an order (DELETE
// /reservations/{order id}). Releasing twice gives back once.
func (inv inventory) release(r *http.Request) (any, error) {
	orderID, err := platform.ParseID(r)
	if err != nil {
		return nil, err
	}
	return true, inv.setHeld(r.Context(), orderID, hold{})
}

// setHeld makes the reservation of an order hold exactly the pieces of
// h.want, moving the difference from or to the stock in the same commit.
func (inv inventory) setHeld(ctx context.Context, orderID string, h hold) error {
	want := h.want
	return entitycache.Retry(ctx, func() error {
		res, version, err := shop.Reservations.Get(ctx, inv.cache, orderID)
		if err != nil {
			return err
		}
		next := shop.Reservation{ID: orderID, ProductIDs: want, OrderVersion: h.orderVersion, ChangedAt: time.Now().UnixMilli(), RecordBy: h.recordBy}
		var held []string
		if res != nil {
			if h.orderVersion != 0 && res.OrderVersion >= h.orderVersion {
				return nil // it followed this event, or a later one, already
			}
			if h.settled != 0 && max(res.ChangedAt, res.RecordBy) > h.settled {
				return nil // changed, or waited for, since the sweeper looked
			}
			held, next.OrderVersion, next.RecordBy = res.ProductIDs, max(res.OrderVersion, h.orderVersion), max(res.RecordBy, h.recordBy)
		}
		if slices.Equal(held, want) && (res == nil || next.RecordBy == res.RecordBy) {
			// It holds what is wanted already, and waits as long. Only a
			// change is written, so that following an order's events
			// doubles no reservation event.
			return nil
		}
		changes, err := inv.moveStock(ctx, need(want, held))
		if err != nil {
			return err
		}
		switch {
		case res == nil:
			changes = append(changes, shop.Reservations.Change(shop.ReservationCreated, next, version))
		case len(want) == 0:
			changes = append(changes, shop.Reservations.Change(shop.ReservationDeleted, *res, version))
		default:
			changes = append(changes, shop.Reservations.Change(shop.ReservationUpdated, next, version))
		}
		_, err = inv.cache.Commit(ctx, changes...)
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

// moveStock returns the inventory changes that move pieces between the
// stock and a reservation: a positive count takes from the stock, checked
// against what is left, a negative one gives back. The versions read are
// expected, so a concurrent change of the stock makes the commit retry.
func (inv inventory) moveStock(ctx context.Context, pieces map[string]int64) ([]entitycache.Change, error) {
	var products []string
	for p, n := range pieces {
		if n != 0 {
			products = append(products, p)
		}
	}
	slices.Sort(products)
	ids := make([]string, len(products))
	for i, p := range products {
		ids[i] = shop.InventoryID(p)
	}
	items, versions, err := shop.Inventories.GetMany(ctx, inv.cache, ids...)
	if err != nil {
		return nil, err
	}
	var changes []entitycache.Change
	for i, p := range products {
		n := pieces[p]
		switch {
		case items[i] == nil && n > 0:
			return nil, &shop.OutOfStockError{ProductID: p, Wanted: n, NoInventory: true}
		case items[i] == nil:
			continue // its inventory was deleted: nothing to give back to
		case items[i].Amount < n:
			return nil, &shop.OutOfStockError{ProductID: p, Wanted: n, Left: items[i].Amount}
		}
		item := *items[i]
		item.Amount = giveOrTake(item.Amount, n)
		changes = append(changes, shop.Inventories.Change(shop.InventoryUpdated, item, versions[i]))
	}
	return changes, nil
}

// giveOrTake is the amount after taking n pieces (n > 0, checked against
// the amount before) or giving -n back. What is given back stops at
// shop.MaxAmount, also from an amount that an older stream recorded beyond
// it: refusing the release instead would leave the order's reservation
// held for good, and pieces beyond 2^53-1 are not worth counting.
func giveOrTake(amount, n int64) int64 {
	if n < 0 && amount > shop.MaxAmount+n {
		return shop.MaxAmount
	}
	return amount - n
}
