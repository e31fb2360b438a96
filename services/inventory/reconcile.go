package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// The order service reserves, then records the order, and sets the
// reservation back when that fails; but it may crash, time out or lose an
// answer in between. So the stock held converges to what the live orders
// hold (invariant 9) by two means here: inventory follows the order events
// as group "inventory", and a sweeper releases the reservations whose order
// never came.

type config struct {
	platform.Consuming
	// ReservationGrace is how long a reservation may wait for its order to
	// be recorded before the sweeper releases it: the order service records
	// an order right after reserving, within its request timeout.
	ReservationGrace time.Duration `envconfig:"RESERVATION_GRACE" default:"30s"`
}

// sweepPage is the most reservations one pass of the sweeper reads.
const sweepPage = 500

// reconcile makes the reservations follow the orders while the app serves.
func reconcile(app *platform.App, inv inventory, cfg config) error {
	r := eventstore.NewRouter()
	for _, typ := range []string{shop.OrderCreated, shop.OrderUpdated, shop.OrderDeleted} {
		eventstore.On(r, typ, inv.follow)
	}
	app.Go(func(ctx context.Context) error { return inv.sweep(ctx, app.Log, cfg.ReservationGrace) })
	return platform.Consume(app, cfg.Consuming, "inventory", []string{shop.Orders.StreamName()}, r)
}

// follow sets an order's reservation to what an event of the order says it
// holds: its products, or nothing once it is deleted. An event older than
// the order in the cache changes nothing: a later one follows, or was
// followed already (a retry hands events out of order), and a deleted order
// is not brought back by a stale create. Stock too short for an order that
// exists (it was recorded without its reservation and the stock was sold
// since) fails the delivery: it is retried with backoff, in case stock comes
// back, then dead-lettered, where an operator sees it (/ops/deadletters,
// the metrics) and replays it once restocked. The stock never goes below
// zero for it.
func (inv inventory) follow(ctx context.Context, e eventstore.Event, ord shop.Order) error {
	_, current, err := shop.Orders.Get(ctx, inv.cache, e.EntityID)
	if err != nil || current > e.Version {
		return err
	}
	var want []string
	if e.Type != shop.OrderDeleted {
		want = ord.ProductIDs
	}
	return inv.setHeld(ctx, e.EntityID, hold{want: want, orderVersion: e.Version})
}

// sweep runs a pass of sweepOnce every few seconds, page after page of the
// reservations, from the first again after the last.
func (inv inventory) sweep(ctx context.Context, log *slog.Logger, grace time.Duration) error {
	tick := time.NewTicker(min(grace, 5*time.Second))
	defer tick.Stop()
	after := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		next, err := inv.sweepOnce(ctx, after, grace)
		if err != nil && ctx.Err() == nil {
			log.Warn("sweeping reservations", "err", err)
		}
		after = next
	}
}

// sweepOnce sets the reservations of a page that are settled to what their
// order holds now: nothing when the order was never recorded (its service
// crashed or lost the answer between reserving and recording) or is gone,
// its products when a swap was left half done. A reservation is settled
// once the grace has passed since its last change and since the time its
// order was to be recorded by (shop.Reservation.RecordBy), which the order's
// append cannot pass, by Redis's clock: the grace covers the clocks'
// difference. The time is taken before the orders are read, so an order
// recorded by then is seen. It answers the After of the next page: "" after
// the last page, or when this one could not be read, so that the next pass
// starts again from the first.
func (inv inventory) sweepOnce(ctx context.Context, after string, grace time.Duration) (string, error) {
	settled := time.Now().Add(-grace).UnixMilli()
	page, next, err := shop.Reservations.ListPage(ctx, inv.cache, entitycache.Page{After: after, Limit: sweepPage})
	if err != nil {
		return "", err
	}
	ids := make([]string, len(page))
	for i, res := range page {
		ids[i] = res.ID
	}
	ords, _, err := shop.Orders.GetMany(ctx, inv.cache, ids...)
	if err != nil {
		return "", err
	}
	var errs []error
	for i, res := range page {
		var want []string
		if ords[i] != nil {
			want = ords[i].ProductIDs
		}
		if max(res.ChangedAt, res.RecordBy) > settled || slices.Equal(res.ProductIDs, want) {
			continue
		}
		errs = append(errs, inv.setHeld(ctx, res.ID, hold{want: want, settled: settled}))
	}
	return next, errors.Join(errs...)
}
