package main

import (
	"os"
	"testing"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestProductPriceIsANumber(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "product", platformtest.Config(t), platform.NoConfig{}, wire)
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
	app, srv := platformtest.Start(t, "product", platformtest.Config(t), platform.NoConfig{}, wire)
	platformtest.RejectAll(t, app, srv.URL, "product", []platformtest.BadRequest{
		platformtest.Bad("missing price", "POST", "/product", `{"name": "x"}`, 400),
		platformtest.Bad("negative price", "POST", "/product", `{"name": "x", "price": -1}`, 400),
		platformtest.Bad("fraction price", "POST", "/product", `{"name": "x", "price": 1.5}`, 400),
		platformtest.Bad("string price", "POST", "/product", `{"name": "x", "price": "3"}`, 400),
		platformtest.Bad("missing name", "POST", "/product", `{"price": 3}`, 400),
		platformtest.Bad("null name", "POST", "/product", `{"name": null, "price": 3}`, 400),
		platformtest.Bad("negative price on PUT", "PUT", "/product/2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11", `{"name": "x", "price": -1}`, 400),
	})
}
