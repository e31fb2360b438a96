package main

import (
	"context"
	"net/http"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
)

// Stock is what orders need of the inventory: the stock held for each order.
type Stock interface {
	// Reserve makes the stock held for an order exactly its products: all
	// of them for a new order, a swap of the difference for a changed one,
	// all or nothing. Out of stock is a 409 that names the product.
	// recordBy is when the order will be recorded or given up by (zero: it
	// is recorded already); the stock stays held until then at least.
	Reserve(ctx context.Context, orderID string, productIDs []string, recordBy time.Time) error
	// Release gives back all the stock held for an order; releasing twice
	// gives back once.
	Release(ctx context.Context, orderID string) error
}

// inventoryClient is Stock over the inventory service's HTTP API.
type inventoryClient struct {
	http *http.Client
	url  string // of inventory
}

func (c inventoryClient) Reserve(ctx context.Context, orderID string, productIDs []string, recordBy time.Time) error {
	body := map[string]any{"product_ids": productIDs}
	if !recordBy.IsZero() {
		body["record_by"] = recordBy.UnixMilli()
	}
	return platform.Call(ctx, c.http, http.MethodPut, c.url+"/reservations/"+orderID, body, nil)
}

func (c inventoryClient) Release(ctx context.Context, orderID string) error {
	return platform.Call(ctx, c.http, http.MethodDelete, c.url+"/reservations/"+orderID, nil, nil)
}
