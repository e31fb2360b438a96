package shop_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// shopOf is a shop in the test's own keys with a customer, a product of
// 10 pieces and an order of 2 that holds them, as the services leave it.
func shopOf(t *testing.T) (*entitycache.Cache, shop.Order) {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	cache := entitycache.New(eventstore.New(rdb, prefix, eventstore.WithPartitions(redistest.Partitions())))
	c := shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}
	p := shop.Product{ID: uuid.NewString(), Name: "Tea", Price: 350}
	o := shop.Order{ID: uuid.NewString(), CustomerID: c.ID, ProductIDs: []string{p.ID, p.ID}}
	commit(t, cache, shop.Customers.Kind.Change(shop.CustomerCreated, c, eventstore.NoEntity))
	commit(t, cache, shop.Products.Kind.Change(shop.ProductCreated, p, eventstore.NoEntity))
	inv := shop.Inventory{ID: shop.InventoryID(p.ID), ProductID: p.ID, Amount: 8}
	commit(t, cache, shop.Inventories.Kind.Change(shop.InventoryCreated, inv, eventstore.NoEntity),
		shop.Reservations.Change(shop.ReservationCreated, shop.Reservation{ID: o.ID, ProductIDs: o.ProductIDs}, eventstore.NoEntity))
	commit(t, cache, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity))
	b, _ := shop.NewBilling(o.ID, false)
	commit(t, cache, shop.Billings.Kind.Change(shop.BillingCreated, b, eventstore.NoEntity))
	sendMail(t, cache, uuid.NewString(), "thank-you")
	return cache, o
}

func commit(t *testing.T, cache *entitycache.Cache, changes ...entitycache.Change) {
	t.Helper()
	if _, err := cache.Commit(context.Background(), changes...); err != nil {
		t.Fatal(err)
	}
}

// sendMail records a mail as msg does, under an id of its own.
func sendMail(t *testing.T, cache *entitycache.Cache, id, key string) {
	m := shop.Email{ID: id, Key: key, To: "ada@example.com", Msg: "Thank you"}
	commit(t, cache, shop.Emails.Kind.Change(shop.EmailSent, m, eventstore.NoEntity))
}

// verify runs -verify's check on the shop and returns its report.
func verify(t *testing.T, cache *entitycache.Cache) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := platform.Verify(context.Background(), cache, shop.Domain, &out)
	return out.String(), err
}

// found: -verify failed, reporting a finding that says want, and one only.
func found(t *testing.T, cache *entitycache.Cache, want string) {
	t.Helper()
	report, err := verify(t, cache)
	if err == nil || !strings.Contains(report, want) || !strings.HasSuffix(report, "\n1 findings\n") {
		t.Fatalf("verify: %v, report:\n%s\nwant one finding with %q", err, report, want)
	}
}

func TestVerifyOfAShopThatAgreesIsOK(t *testing.T) {
	t.Parallel()
	cache, _ := shopOf(t)
	if report, err := verify(t, cache); err != nil || !strings.HasPrefix(report, "ok") || strings.Count(report, "\n") != 1 {
		t.Fatalf("verify: %v, report:\n%s", err, report)
	}
}

func TestVerifyReportsACacheBrokenByHand(t *testing.T) {
	t.Parallel()
	cache, o := shopOf(t)
	cache.Store().Redis().HSet(context.Background(), cache.Store().Key(cache.Store().PartitionOf("order", o.ID), "order_entity:"+o.ID), "customer_id", "someone")
	found(t, cache, "order_entity:"+o.ID+": the cache has hash [customer_id=someone")
}

func TestVerifyReportsAReservationWithoutAnOrder(t *testing.T) {
	t.Parallel()
	cache, _ := shopOf(t)
	stray := shop.Reservation{ID: uuid.NewString(), ProductIDs: []string{uuid.NewString()}}
	commit(t, cache, shop.Reservations.Change(shop.ReservationCreated, stray, eventstore.NoEntity))
	found(t, cache, "reservation "+stray.ID+" holds ["+stray.ProductIDs[0]+"] without a live order")
}

func TestVerifyReportsAnOrderWhoseReservationDiffers(t *testing.T) {
	t.Parallel()
	cache, o := shopOf(t)
	less := shop.Reservation{ID: o.ID, ProductIDs: o.ProductIDs[:1]}
	commit(t, cache, shop.Reservations.Change(shop.ReservationUpdated, less, eventstore.AnyVersion))
	found(t, cache, "order "+o.ID+" holds")
}

func TestVerifyReportsANegativeAmount(t *testing.T) {
	t.Parallel()
	cache, _ := shopOf(t)
	p := uuid.NewString()
	inv := shop.Inventory{ID: shop.InventoryID(p), ProductID: p, Amount: -1}
	commit(t, cache, shop.Inventories.Kind.Change(shop.InventoryCreated, inv, eventstore.NoEntity))
	found(t, cache, "inventory "+inv.ID+" of product "+p+": amount -1, below zero")
}

func TestVerifyReportsTwoBillingsOfOneOrder(t *testing.T) {
	t.Parallel()
	cache, o := shopOf(t)
	second := shop.Billing{ID: uuid.NewString(), OrderID: o.ID}
	commit(t, cache, shop.Billings.Kind.Change(shop.BillingCreated, second, eventstore.NoEntity))
	found(t, cache, "order "+o.ID+" has 2 billings")
}

func TestVerifyReportsABillingOfAnOrderThatNeverExisted(t *testing.T) {
	t.Parallel()
	cache, _ := shopOf(t)
	b, _ := shop.NewBilling(uuid.NewString(), false)
	commit(t, cache, shop.Billings.Kind.Change(shop.BillingCreated, b, eventstore.NoEntity))
	found(t, cache, "billing "+b.ID+" is for order "+b.OrderID+", which never existed")
}

func TestVerifyReportsAMailKeySentTwice(t *testing.T) {
	t.Parallel()
	cache, _ := shopOf(t)
	sendMail(t, cache, uuid.NewString(), "twice")
	sendMail(t, cache, uuid.NewString(), "twice")
	found(t, cache, `mail key "twice" sent 2 times`)
}
