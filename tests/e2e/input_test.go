package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
)

// Malformed, invalid or impossible requests through the gateway each get a
// JSON error with their 4xx status, and write nothing: every stream keeps
// its length. Orders refused for want of stock after part of them was
// reserved give it back: their events cancel out, the stock is as before.
func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	g := s.Gateway
	customers, emails := g.Customers(t, "input", 2)
	c := customers[0]
	prods := g.Create(t, "/products", []map[string]any{{"name": "P", "price": 1}, {"name": "Q", "price": 2}, {"name": "R", "price": 3}})
	p, q, r := prods[0], prods[1], prods[2] // P in stock, Q out of stock, R without inventory
	stock := g.Create(t, "/inventory", []map[string]any{{"product_id": p, "amount": 5}, {"product_id": q, "amount": 0}})[0]
	o := g.Create(t, "/order", map[string]any{"customer_id": c, "product_ids": []string{p}})[0]
	o2 := g.Create(t, "/order", map[string]any{"customer_id": customers[1], "product_ids": []string{p}})[0] // not billed
	g.Create(t, "/billing", map[string]any{"order_id": o, "done": true})
	// The mails the setup causes are written asynchronously: wait for them.
	g.WaitMails(t, 30*time.Second, "Welcome", emails)
	g.WaitMails(t, 30*time.Second, "Thank you", emails)
	g.WaitMails(t, 30*time.Second, "Please pay", emails[:1]) // o is billed, o2 is not
	g.WaitMails(t, 30*time.Second, "Receipt", emails[:1])
	s.settled(s.Admin+"/ops/crm/stats", 30*time.Second)
	s.settled(s.Admin+"/ops/billing/stats", 30*time.Second)

	unknown := uuid.NewString()
	customer := `{"name": "A", "email": "a@example.com"}`
	big := `[` + strings.Repeat(customer+`,`, (1<<20)/len(customer)+100) + customer + `]`
	overBatch := `[` + strings.Repeat(customer+`,`, 1000) + customer + `]` // MAX_BATCH is 1000
	type request struct {
		name         string
		method, path string
		body         any
		want         int
	}
	cases := []request{
		{"malformed JSON", "POST", "/customer", `{"name": "A", "email": `, 400},
		{"empty body", "POST", "/customer", ``, 400},
		{"a string, not an object", "POST", "/customer", `"A"`, 400},
		{"two JSON values", "POST", "/customer", customer + customer, 400},
		{"unknown field", "POST", "/customer", `{"name": "A", "email": "a@example.com", "vip": true}`, 400},
		{"name of the wrong type", "POST", "/customer", `{"name": 5, "email": "a@example.com"}`, 400},
		{"missing name", "POST", "/customer", `{"email": "a@example.com"}`, 400},
		{"blank name", "POST", "/customer", `{"name": "  ", "email": "a@example.com"}`, 400},
		{"empty email", "POST", "/customer", `{"name": "A", "email": ""}`, 400},
		{"not an e-mail address", "POST", "/customer", `{"name": "A", "email": "not-an-address"}`, 400},
		{"empty list", "POST", "/customers", `[]`, 400},
		{"one bad item of a batch", "POST", "/customers", `[` + customer + `, {"name": "", "email": "b@example.com"}]`, 400},
		{"body over 1 MiB", "POST", "/customers", big, 413},
		{"text/plain, as any web page may send", "POST", "/customer", platformtest.Typed("text/plain", customer), 415},
		{"a batch over MAX_BATCH", "POST", "/customers", overBatch, 413},
		{"name of 201 characters", "POST", "/customer", fmt.Sprintf(`{"name": %q, "email": "a@example.com"}`, strings.Repeat("é", 201)), 400},
		{"control characters in the name", "POST", "/customer", `{"name": "A\r\nB\u0000", "email": "a@example.com"}`, 400},
		{"e-mail without a dot in the domain", "POST", "/customer", `{"name": "A", "email": "a@b"}`, 400},
		{"e-mail to an IP literal", "POST", "/customer", `{"name": "A", "email": "a@[127.0.0.1]"}`, 400},
		{"key in capitals", "POST", "/customer", `{"NAME": "A", "email": "a@example.com"}`, 400},
		{"key given twice", "POST", "/customer", `{"name": "A", "email": "a@example.com", "name": "B"}`, 400},
		{"update of an unknown customer", "PUT", "/customer/" + unknown, customer, 404},
		{"update with a non-UUID id", "PUT", "/customer/42", customer, 400},
		{"update with a bad body", "PUT", "/customer/" + c, `{"name": "A"}`, 400},
		{"delete of an unknown customer", "DELETE", "/customer/" + unknown, nil, 404},
		{"delete with a non-UUID id", "DELETE", "/customers/xyz", nil, 400},
		{"plural get of an unknown customer", "GET", "/customers/" + unknown, nil, 404},
		{"get with a non-UUID id", "GET", "/customer/xyz", nil, 400},
		{"negative price", "POST", "/product", `{"name": "P", "price": -1}`, 400},
		{"price as a string", "POST", "/product", `{"name": "P", "price": "1"}`, 400},
		{"fractional price", "POST", "/product", `{"name": "P", "price": 1.5}`, 400},
		{"missing price", "POST", "/product", `{"name": "P"}`, 400},
		{"price of 2^53", "POST", "/product", `{"name": "P", "price": 9007199254740992}`, 400},
		{"negative stock", "POST", "/inventory", fmt.Sprintf(`{"product_id": %q, "amount": -1}`, r), 400},
		{"missing amount", "POST", "/inventory", fmt.Sprintf(`{"product_id": %q}`, r), 400},
		{"stock of an unknown product", "POST", "/inventory", fmt.Sprintf(`{"product_id": %q, "amount": 1}`, unknown), 404},
		{"stock of a non-UUID product", "POST", "/inventory", `{"product_id": "xyz", "amount": 1}`, 400},
		{"second inventory of a product", "POST", "/inventory", fmt.Sprintf(`{"product_id": %q, "amount": 1}`, p), 409},
		{"order of more than 10,000 pieces", "POST", "/order", fmt.Sprintf(`{"customer_id": %q, "product_ids": [%s%q]}`, c, strings.Repeat(fmt.Sprintf("%q,", p), 10000), p), 413},
		{"order without products", "POST", "/order", fmt.Sprintf(`{"customer_id": %q, "product_ids": []}`, c), 400},
		{"products not a list", "POST", "/order", fmt.Sprintf(`{"customer_id": %q, "product_ids": %q}`, c, p), 400},
		{"order of an unknown customer", "POST", "/order", fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q]}`, unknown, p), 404},
		{"order of an unknown product", "POST", "/order", fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q]}`, c, unknown), 404},
		{"order with a non-UUID customer", "POST", "/order", fmt.Sprintf(`{"customer_id": "xyz", "product_ids": [%q]}`, p), 400},
		{"order partly out of stock", "POST", "/order", fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q, %q]}`, c, p, q), 409},
		{"order of a product without stock", "POST", "/order", fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q]}`, c, r), 409},
		{"batch with one order out of stock", "POST", "/orders", fmt.Sprintf(`[{"customer_id": %q, "product_ids": [%q]}, {"customer_id": %q, "product_ids": [%q]}]`, c, p, c, q), 409},
		{"update of an unknown order", "PUT", "/order/" + unknown, fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q]}`, c, p), 404},
		{"update of an order out of stock", "PUT", "/order/" + o2, fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q]}`, c, q), 409},
		{"update of a billed order", "PUT", "/order/" + o, fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q, %q]}`, c, p, p), 409},
		{"delete of a billed order", "DELETE", "/orders/" + o, nil, 409},
		{"delete of reserved stock", "DELETE", "/inventory/" + stock, nil, 409},
		{"billing without order", "POST", "/billing", `{}`, 400},
		{"billing of a non-UUID order", "POST", "/billing", `{"order_id": "xyz"}`, 400},
		{"billing of an unknown order", "POST", "/billing", fmt.Sprintf(`{"order_id": %q}`, unknown), 404},
		{"second billing of an order", "POST", "/billing", fmt.Sprintf(`{"order_id": %q}`, o), 409},
		{"done of the wrong type", "POST", "/billing", fmt.Sprintf(`{"order_id": %q, "done": "yes"}`, o), 400},
		{"PATCH", "PATCH", "/customer/" + c, customer, 405},
		{"PUT on a collection", "PUT", "/customers", customer, 405},
		{"DELETE on a collection", "DELETE", "/products", nil, 405},
		{"POST on the report", "POST", "/report", `{}`, 405},
		{"POST on the unbilled orders", "POST", "/orders/unbilled", `{}`, 405},
		{"POST on the mails", "POST", "/emails", `{"to": "a@example.com", "msg": "hi", "key": "k"}`, 405},
		{"unknown route", "GET", "/nothing", nil, 404},
		{"an operator route on the public port", "POST", "/ops/crm/deadletters/customer/1-0/replay", nil, 404},
		{"the probes on the public port", "GET", "/readyz", nil, 404},
	}
	// The same for the operator's routes, on the gateway's admin listener.
	adminCases := []request{
		{"replay of an unknown dead letter", "POST", "/ops/crm/deadletters/customer/1-0/replay", nil, 404},
		{"replay on an unknown stream", "POST", "/ops/crm/deadletters/nothing/1-0/replay", nil, 400},
		{"replay of a malformed id", "POST", "/ops/crm/deadletters/customer/xyz/replay", nil, 400},
	}
	// Refused after part of their stock was reserved and given back: these
	// write events that cancel out.
	compensated := map[string]bool{"batch with one order out of stock": true, "update of an order out of stock": true}
	// Changes conditional on an If-Match that names another version.
	stale := http.Header{"If-Match": {`"999"`}}
	conditional := []request{
		{"update with a stale If-Match", "PUT", "/customer/" + c, fmt.Sprintf(`{"name": "A", "email": %q}`, emails[0]), 412},
		{"delete with a stale If-Match", "DELETE", "/customers/" + c, nil, 412},
		{"update of stock with a stale If-Match", "PUT", "/inventory/" + stock, fmt.Sprintf(`{"product_id": %q, "amount": 9}`, p), 412},
		{"update of an order with a stale If-Match", "PUT", "/order/" + o2, fmt.Sprintf(`{"customer_id": %q, "product_ids": [%q]}`, c, p), 412},
	}
	check := func(base string, tc request, header http.Header) {
		pre := s.streamLengths()
		status, _, body, err := platformtest.SendWith(tc.method, base+tc.path, tc.body, header)
		if err != nil {
			t.Fatal(err)
		}
		if post := s.streamLengths(); fmt.Sprint(post) != fmt.Sprint(pre) && !compensated[tc.name] {
			t.Errorf("%s: streams changed from %v to %v", tc.name, pre, post)
		}
		if status != tc.want || !isJSONError(string(body)) {
			t.Errorf("%s: %s %s answered %d %.200s, want %d with a JSON error", tc.name, tc.method, tc.path, status, body, tc.want)
		}
	}
	for _, tc := range cases {
		check(string(g), tc, nil)
	}
	for _, tc := range conditional {
		check(string(g), tc, stale)
	}
	for _, tc := range adminCases {
		check(s.Admin, tc, nil)
	}

	if amount := g.Get(t, "/inventory/"+stock)["amount"]; amount != float64(3) {
		t.Errorf("stock of P is %v, want 3: a refused order kept stock", amount)
	}
	if n := len(g.List(t, "/orders")); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}
	for _, id := range []string{o, o2} {
		if ord := g.Get(t, "/order/"+id); fmt.Sprint(ord["product_ids"]) != fmt.Sprint([]any{p}) {
			t.Errorf("order after a refused update: %v", ord)
		}
	}
}

// streamLengths is the length of every stream in Redis, dead letters too.
func (s *stack) streamLengths() map[string]int64 {
	s.t.Helper()
	out := map[string]int64{}
	var cursor uint64
	for range 100 { // a test's Redis has a few dozen keys
		keys, next, err := s.Redis().ScanType(context.Background(), cursor, "*", 1000, "stream").Result()
		if err != nil {
			s.t.Fatal(err)
		}
		for _, k := range keys {
			out[k] = s.xlen(k)
		}
		if cursor = next; cursor == 0 {
			return out
		}
	}
	s.t.Fatal("SCAN did not finish")
	return nil
}
