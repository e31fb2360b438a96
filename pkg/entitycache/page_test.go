package entitycache_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/ordershop/ordershop/pkg/entitycache"
)

type mail struct {
	ID  string `json:"id"`
	Msg string `json:"msg"`
	To  string `json:"to"`
}

var mails = entitycache.Kind[mail]{Name: "email", Created: "email_sent", Deleted: "email_deleted", Index: "to"}

// pages reads a list page by page, as a client follows its next links, and
// answers the pages' sizes.
func pages[T any](t *testing.T, limit int, list func(entitycache.Page) ([]T, string, error)) ([]T, []int) {
	t.Helper()
	var all []T
	var sizes []int
	p := entitycache.Page{Limit: limit}
	for {
		page, next, err := list(p)
		if err != nil {
			t.Fatal(err)
		}
		if next != "" && next <= p.After {
			t.Fatalf("the page after %q says the next starts after %q", p.After, next)
		}
		all, sizes = append(all, page...), append(sizes, len(page))
		if next == "" {
			return all, sizes
		}
		p.After = next
	}
}

// A list is read page by page in id order: each page holds at most its limit
// of the entities after the last page's last id, and says where the next
// starts, until the last.
func TestPagesWalkTheListInIDOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	var want []order
	for i := range 25 {
		id := fmt.Sprintf("o%02d", i*7%25) // committed out of order
		commit(t, c, create(orders, order{ID: id, CustomerID: "c", ProductIDs: []string{"p"}}))
	}
	for _, id := range []string{"o03", "o17"} {
		commit(t, c, orders.Change(orders.Deleted, order{ID: id}, 1))
	}
	for i := range 25 {
		if i != 3 && i != 17 {
			want = append(want, order{ID: fmt.Sprintf("o%02d", i), CustomerID: "c", ProductIDs: []string{"p"}})
		}
	}
	if all, err := orders.List(ctx, c); err != nil || !reflect.DeepEqual(all, want) {
		t.Fatalf("list %v (%v), want %v", all, err, want)
	}
	list := func(p entitycache.Page) ([]order, string, error) { return orders.ListPage(ctx, c, p) }
	for _, tc := range []struct {
		limit int
		sizes []int
	}{{10, []int{10, 10, 3}}, {23, []int{23, 0}}, {1000, []int{23}}} {
		got, sizes := pages(t, tc.limit, list)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(sizes, tc.sizes) {
			t.Fatalf("pages of %d: %v of sizes %v, want sizes %v", tc.limit, got, sizes, tc.sizes)
		}
	}
	if page, next, err := orders.ListPage(ctx, c, entitycache.Page{After: "o20", Limit: 2}); err != nil ||
		len(page) != 2 || page[0].ID != "o21" || page[1].ID != "o22" || next != "o22" {
		t.Fatalf("2 after o20: %v, next %q (%v)", page, next, err)
	}
}

// A cache from before the sorted sets has only the set of ids: whole lists
// read that, pages wait for a rebuild to fill the sorted ids.
func TestARebuildFillsTheSortedIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	for i := range 5 {
		commit(t, c, create(stock, item{ID: fmt.Sprint("i", i), ProductID: "p"}))
	}
	c.Store().Redis().Del(ctx, stockKey(c, "inventory_sorted_ids"))
	if all, _ := stock.List(ctx, c); len(all) != 5 {
		t.Fatalf("%d listed without the sorted ids, want 5", len(all))
	}
	if page, _, _ := stock.ListPage(ctx, c, entitycache.Page{Limit: 10}); len(page) != 0 {
		t.Fatalf("%d paged without the sorted ids", len(page))
	}
	if err := c.Rebuild(ctx, stock, reservations); err != nil {
		t.Fatal(err)
	}
	if page, _, err := stock.ListPage(ctx, c, entitycache.Page{Limit: 10}); err != nil || len(page) != 5 {
		t.Fatalf("%d paged after a rebuild (%v), want 5", len(page), err)
	}
}

// An Index lists the entities of one value, here a recipient's mails among
// those of many others, by the same pages; it follows deletes and rebuilds.
func TestAnIndexListsTheEntitiesOfOneValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t)
	others := make([]entitycache.Change, 500)
	for i := range others {
		others[i] = create(mails, mail{ID: fmt.Sprintf("m%03d", i), To: fmt.Sprint("x", i%7, "@example.com"), Msg: "hi"})
	}
	commit(t, c, others...)
	var want []mail
	for _, id := range []string{"a3", "a1", "a2"} {
		commit(t, c, create(mails, mail{ID: id, To: "ada@example.com", Msg: "for " + id}))
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		want = append(want, mail{ID: id, To: "ada@example.com", Msg: "for " + id})
	}
	ada := func(p entitycache.Page) ([]mail, string, error) { return mails.ListBy(ctx, c, "ada@example.com", p) }
	if got, sizes := pages(t, 2, ada); !reflect.DeepEqual(got, want) || !reflect.DeepEqual(sizes, []int{2, 1}) {
		t.Fatalf("ada's mails %v in pages %v, want %v", got, sizes, want)
	}
	if got, next, err := mails.ListBy(ctx, c, "cy@example.com", entitycache.Page{}); err != nil || got == nil || len(got) != 0 || next != "" {
		t.Fatalf("cy's mails %#v, next %q (%v)", got, next, err)
	}
	commit(t, c, mails.Change(mails.Deleted, want[1], 1))
	before := dump(t, c)
	for k := range before {
		c.Store().Redis().Del(ctx, k)
	}
	if err := c.Rebuild(ctx, mails); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatalf("rebuilt cache differs:\nbefore %v\nafter  %v", before, after)
	}
	if got, _, err := ada(entitycache.Page{}); err != nil || !reflect.DeepEqual(got, []mail{want[0], want[2]}) {
		t.Fatalf("ada's mails after a delete and a rebuild: %v (%v)", got, err)
	}
}
