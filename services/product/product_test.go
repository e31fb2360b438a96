package main

import (
	"os"
	"testing"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/pkg/eventstore/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestProductPriceIsANumber(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "product", platformtest.Config(t), wire)
	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/products", []map[string]any{{"name": "Tea", "price": 350}, {"name": "Free", "price": 0}}, 200, &ids)
	var got map[string]any
	platformtest.JSON(t, "GET", srv.URL+"/product/"+ids[0], nil, 200, &got)
	if got["name"] != "Tea" || got["price"] != float64(350) {
		t.Fatalf("product %#v", got)
	}
	platformtest.JSON(t, "PUT", srv.URL+"/products/"+ids[0], map[string]any{"name": "Tea", "price": 400}, 200, nil)
	platformtest.JSON(t, "GET", srv.URL+"/products/"+ids[0], nil, 200, &got)
	if got["price"] != float64(400) {
		t.Fatalf("after PUT %#v", got)
	}
}

func TestBadProductsAreRejected(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "product", platformtest.Config(t), wire)
	for name, body := range map[string]string{
		"missing price":  `{"name": "x"}`,
		"negative price": `{"name": "x", "price": -1}`,
		"fraction price": `{"name": "x", "price": 1.5}`,
		"string price":   `{"name": "x", "price": "3"}`,
		"missing name":   `{"price": 3}`,
		"null name":      `{"name": null, "price": 3}`,
	} {
		t.Run(name, func(t *testing.T) { platformtest.Rejected(t, "POST", srv.URL+"/product", body, 400) })
	}
	if info, _ := app.Store.Info(t.Context(), "product"); info.Length != 0 {
		t.Fatalf("bad input wrote %d events", info.Length)
	}
}
