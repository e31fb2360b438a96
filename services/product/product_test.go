package main

import (
	"os"
	"strings"
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
	// The largest price a JavaScript client reads exactly.
	platformtest.JSON(t, "PUT", srv.URL+"/products/"+ids[0], `{"name": "Tea", "price": 9007199254740991}`, 200, nil)
	platformtest.JSON(t, "GET", srv.URL+"/products/"+ids[0], nil, 200, &got)
	if got["price"] != float64(1<<53-1) {
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
		platformtest.Bad("price of 2^53", "POST", "/product", `{"name": "x", "price": 9007199254740992}`, 400),
		platformtest.Bad("price of -2^53", "POST", "/product", `{"name": "x", "price": -9007199254740992}`, 400),
		platformtest.Bad("price beyond int64", "POST", "/product", `{"name": "x", "price": 99999999999999999999}`, 400),
		platformtest.Bad("name of 201 characters", "POST", "/product", map[string]any{"name": strings.Repeat("x", 201), "price": 3}, 400),
		platformtest.Bad("DEL in the name", "POST", "/product", map[string]any{"name": "Tea\x7f", "price": 3}, 400),
		platformtest.Bad("line separator in the name", "POST", "/product", map[string]any{"name": "Tea\u2028Cake", "price": 3}, 400),
		platformtest.Bad("key in another case", "POST", "/product", `{"name": "x", "Price": 3}`, 400),
		platformtest.Bad("price given twice", "POST", "/product", `{"name": "x", "price": -1, "price": 3}`, 400),
		platformtest.Bad("negative price on PUT", "PUT", "/product/2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11", `{"name": "x", "price": -1}`, 400),
	})
}
