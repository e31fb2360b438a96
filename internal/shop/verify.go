package shop

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// The shop's invariants across services, which -verify checks after the
// cache of each stream (platform.Verify). They read the cache, which -verify
// has compared with the streams, and the streams where history counts: an
// order that once existed, a mail sent twice.
// Domain is the shop as every binary is handed it: its streams and the
// invariants -verify checks.
var Domain = platform.Domain{Streams: Streams, Invariants: []platform.Invariant{checkStock, checkReservations, checkBillings, checkMails}}

// checkStock: no inventory holds less than nothing.
func checkStock(ctx context.Context, cache *entitycache.Cache) ([]string, error) {
	all, err := Inventories.Kind.List(ctx, cache)
	var found []string
	for _, inv := range all {
		if inv.Amount < 0 {
			found = append(found, fmt.Sprintf("inventory %s of product %s: amount %d, below zero", inv.ID, inv.ProductID, inv.Amount))
		}
	}
	return found, err
}

// checkReservations: every live order holds its pieces by a reservation of
// its own id, and no reservation holds stock for an order that is gone or
// was never stored. On a quiet system none is in flight.
func checkReservations(ctx context.Context, cache *entitycache.Cache) ([]string, error) {
	orders, err := Orders.Kind.List(ctx, cache)
	if err != nil {
		return nil, err
	}
	held, err := Reservations.List(ctx, cache)
	if err != nil {
		return nil, err
	}
	byOrder := map[string][]string{}
	for _, r := range held {
		byOrder[r.ID] = r.ProductIDs
	}
	var found []string
	for _, o := range orders {
		pieces, ok := byOrder[o.ID]
		delete(byOrder, o.ID)
		switch {
		case !ok:
			found = append(found, fmt.Sprintf("order %s holds %d pieces but has no reservation", o.ID, len(o.ProductIDs)))
		case !samePieces(pieces, o.ProductIDs):
			found = append(found, fmt.Sprintf("order %s holds %s, its reservation %s", o.ID, pieceList(o.ProductIDs), pieceList(pieces)))
		}
	}
	for _, r := range held {
		if _, left := byOrder[r.ID]; left {
			found = append(found, fmt.Sprintf("reservation %s holds %s without a live order", r.ID, pieceList(r.ProductIDs)))
		}
	}
	return found, nil
}

// samePieces: the same product ids, each as often, in any order.
func samePieces(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// pieceList shows pieces briefly: an order may hold thousands.
func pieceList(ids []string) string {
	if len(ids) > 5 {
		return fmt.Sprintf("[%s … %d pieces]", strings.Join(ids[:5], " "), len(ids))
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// checkBillings: at most one billing per order, and none for an order that
// never existed (one deleted since is fine: its bill stays).
func checkBillings(ctx context.Context, cache *entitycache.Cache) ([]string, error) {
	billings, err := Billings.Kind.List(ctx, cache)
	if err != nil {
		return nil, err
	}
	ever := map[string]bool{}
	err = cache.Store().ReplayAll(ctx, Orders.Kind.StreamName(), func(events []eventstore.Event) error {
		for _, e := range events {
			if e.Type == OrderCreated {
				ever[e.EntityID] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var found []string
	perOrder := map[string][]string{}
	for _, b := range billings {
		perOrder[b.OrderID] = append(perOrder[b.OrderID], b.ID)
		if !ever[b.OrderID] {
			found = append(found, fmt.Sprintf("billing %s is for order %s, which never existed", b.ID, b.OrderID))
		}
	}
	for _, order := range slices.Sorted(maps.Keys(perOrder)) {
		if ids := perOrder[order]; len(ids) > 1 {
			found = append(found, fmt.Sprintf("order %s has %d billings: %s", order, len(ids), strings.Join(ids, " ")))
		}
	}
	return found, nil
}

// checkMails: each mail key was sent once. msg derives a mail's id from its
// key, so a second send is refused; two events of one key are two mails.
func checkMails(ctx context.Context, cache *entitycache.Cache) ([]string, error) {
	sent := map[string][]string{} // key -> ids of the events
	var keys []string
	err := cache.Store().ReplayAll(ctx, Emails.Kind.StreamName(), func(events []eventstore.Event) error {
		for _, e := range events {
			if e.Type != EmailSent {
				continue
			}
			var m Email
			if err := e.Decode(&m); err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			}
			if sent[m.Key] == nil {
				keys = append(keys, m.Key)
			}
			sent[m.Key] = append(sent[m.Key], e.ID)
		}
		return nil
	})
	var found []string
	for _, k := range keys {
		if ids := sent[k]; len(ids) > 1 {
			found = append(found, fmt.Sprintf("mail key %q sent %d times: events %s", k, len(ids), strings.Join(ids, " ")))
		}
	}
	return found, err
}
