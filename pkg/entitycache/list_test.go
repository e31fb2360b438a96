package entitycache_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// ListAll reads the whole lists of several kinds in two round trips in all,
// however many kinds and entities, with one partition per stream or several
// (a kind kept in OnePartition too): each list sorted by id, without the deleted,
// an empty kind's empty, and each what the kind's List reads alone.
func TestListAllReadsSeveralKindsInTwoRoundTrips(t *testing.T) {
	t.Parallel()
	for _, partitions := range []int{1, 4} {
		t.Run(fmt.Sprint("partitions=", partitions), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rdb, prefix := redistest.Client(t)
			c := entitycache.New(eventstore.New(rdb, prefix, eventstore.WithPartitions(partitions)))
			var sent redistest.Sent
			rdb.AddHook(&sent)
			var wantOrders []order
			var wantStock []item
			for i := range 40 {
				o := order{ID: fmt.Sprintf("o%02d", i*7%40), CustomerID: "c", ProductIDs: []string{"p", fmt.Sprint(i)}}
				commit(t, c, create(orders, o))
				s := item{ID: fmt.Sprintf("i%02d", i), ProductID: "p", Amount: int64(i)}
				commit(t, c, create(stock, s))
				wantStock = append(wantStock, s)
			}
			commit(t, c, orders.Change(orders.Deleted, order{ID: "o05"}, 1))
			for i := range 40 {
				if i != 5 {
					wantOrders = append(wantOrders, order{ID: fmt.Sprintf("o%02d", i), CustomerID: "c", ProductIDs: []string{"p", fmt.Sprint(i * 23 % 40)}})
				}
			}
			commit(t, c, create(bills, bill{ID: "b1", OrderID: "o01", Done: true}))
			lists := func() (*entitycache.All[order], *entitycache.All[bill], *entitycache.All[item], *entitycache.All[customer]) {
				return orders.All(), bills.All(), stock.All(), customers.All()
			}
			// Once not counted, so that every connection it needs is made.
			o, b, s, cs := lists()
			if err := c.ListAll(ctx, o, b, s, cs); err != nil {
				t.Fatal(err)
			}
			o, b, s, cs = lists()
			if err := c.ListAll(sent.Counted(ctx), o, b, s, cs); err != nil {
				t.Fatal(err)
			}
			if p, n := sent.Pipelines.Load(), sent.Commands.Load(); p != 2 || n != 0 {
				t.Fatalf("ListAll of 4 kinds sent %d pipelines and %d commands alone, want 2 and none", p, n)
			}
			if !reflect.DeepEqual(o.Items, wantOrders) || !reflect.DeepEqual(s.Items, wantStock) ||
				!reflect.DeepEqual(b.Items, []bill{{ID: "b1", OrderID: "o01", Done: true}}) || cs.Items == nil || len(cs.Items) != 0 {
				t.Fatalf("listed\n%v\n%v\n%v\n%#v", o.Items, b.Items, s.Items, cs.Items)
			}
			if alone, err := orders.List(ctx, c); err != nil || !reflect.DeepEqual(alone, o.Items) {
				t.Fatalf("List of orders alone: %v %v", alone, err)
			}
			sent.Reset()
			if _, err := orders.List(sent.Counted(ctx), c); err != nil || sent.Pipelines.Load() != 2 || sent.Commands.Load() != 0 {
				t.Fatalf("List sent %d pipelines and %d commands alone (%v), want 2 and none", sent.Pipelines.Load(), sent.Commands.Load(), err)
			}
		})
	}
}
