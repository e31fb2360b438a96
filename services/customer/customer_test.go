package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestCustomerLifecycle(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "customer", platformtest.Config(t), platform.NoConfig{}, wire)
	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/customers", []map[string]string{
		{"name": "Ada", "email": "ada@example.com"}, {"name": "Bob", "email": "bob@example.com"},
	}, 200, &ids)
	var one []string
	platformtest.JSON(t, "POST", srv.URL+"/customer", map[string]string{"name": "Cy", "email": "cy@example.com"}, 200, &one)
	if len(ids) != 2 || len(one) != 1 {
		t.Fatalf("ids %v %v", ids, one)
	}
	// The limits count characters, not bytes; JSON may say its charset.
	long := map[string]string{"name": strings.Repeat("é", 200), "email": "d@example.com"}
	platformtest.JSON(t, "POST", srv.URL+"/customer", long, 200, nil)
	platformtest.JSON(t, "POST", srv.URL+"/customer", platformtest.Typed("application/json; charset=utf-8", `{"name": "Di", "email": "di@example.com"}`), 200, nil)
	platformtest.JSON(t, "POST", srv.URL+"/customers", slices.Repeat([]map[string]string{{"name": "x", "email": "x@example.com"}}, platformtest.MaxBatch), 200, &one)
	if len(one) != platformtest.MaxBatch {
		t.Fatalf("ids %v %v", ids, one)
	}
	var got map[string]any
	platformtest.JSON(t, "GET", srv.URL+"/customer/"+ids[0], nil, 200, &got)
	if got["name"] != "Ada" || got["email"] != "ada@example.com" || got["id"] != ids[0] {
		t.Fatalf("customer %v", got)
	}
	var ok bool
	platformtest.JSON(t, "PUT", srv.URL+"/customer/"+ids[0], map[string]string{"name": "Ada L", "email": "ada@l.org"}, 200, &ok)
	platformtest.JSON(t, "GET", srv.URL+"/customers/"+ids[0], nil, 200, &got)
	if !ok || got["name"] != "Ada L" || got["email"] != "ada@l.org" {
		t.Fatalf("after PUT: %v", got)
	}
	platformtest.JSON(t, "DELETE", srv.URL+"/customers/"+ids[1], nil, 200, &ok)
	status, body := platformtest.Do(t, "GET", srv.URL+"/customer/"+ids[1], nil)
	if status != 200 || strings.TrimSpace(string(body)) != "null" {
		t.Fatalf("deleted customer: %d %s", status, body)
	}
	platformtest.Rejected(t, "GET", srv.URL+"/customers/"+ids[1], nil, 404)
	var all []map[string]any
	platformtest.JSON(t, "GET", srv.URL+"/customers", nil, 200, &all)
	if want := 4 + platformtest.MaxBatch; len(all) != want {
		t.Fatalf("%d customers listed, want %d", len(all), want)
	}
}

// A list comes whole, as the original client reads it, or page by page in
// id order with ?limit=N, each page linking to the next.
func TestListsComeWholeOrPageByPage(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "customer", platformtest.Config(t), platform.NoConfig{}, wire)
	platformtest.JSON(t, "POST", srv.URL+"/customers", slices.Repeat([]map[string]string{{"name": "x", "email": "x@example.com"}}, 7), 200, nil)
	var all []map[string]any
	platformtest.JSON(t, "GET", srv.URL+"/customers", nil, 200, &all)
	ids := make([]string, len(all))
	for i, c := range all {
		ids[i] = c["id"].(string)
	}
	if len(all) != 7 || !slices.IsSorted(ids) {
		t.Fatalf("whole list %v, want 7 in id order", ids)
	}
	for _, tc := range []struct {
		url   string
		sizes []int
	}{
		{"/customers?limit=3", []int{3, 3, 1}},
		{"/customers?limit=7", []int{7, 0}},
		{"/customers?limit=1000", []int{7}},
		{"/customers?limit=2&after=" + ids[2], []int{2, 2, 0}},
	} {
		var got []map[string]any
		var sizes []int
		for _, page := range platformtest.Pages(t, srv.URL+tc.url) {
			got, sizes = append(got, page...), append(sizes, len(page))
		}
		want := all
		if _, after, ok := strings.Cut(tc.url, "after="); ok {
			want = all[slices.Index(ids, after)+1:]
		}
		if !reflect.DeepEqual(got, want) || !slices.Equal(sizes, tc.sizes) {
			t.Fatalf("%s: pages of %v, %d customers, want pages of %v, %d", tc.url, sizes, len(got), tc.sizes, len(want))
		}
	}
}

func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "customer", platformtest.Config(t), platform.NoConfig{}, wire)
	for i := range 500 {
		var ids []string
		platformtest.JSON(t, "POST", srv.URL+"/customer", map[string]string{"name": fmt.Sprint("c", i), "email": "c@example.com"}, 200, &ids)
		var got map[string]any
		platformtest.JSON(t, "GET", srv.URL+"/customer/"+ids[0], nil, 200, &got)
		if got == nil || got["name"] != fmt.Sprint("c", i) {
			t.Fatalf("write %d not visible: %v", i, got)
		}
		platformtest.JSON(t, "DELETE", srv.URL+"/customer/"+ids[0], nil, 200, nil)
		if status, body := platformtest.Do(t, "GET", srv.URL+"/customer/"+ids[0], nil); strings.TrimSpace(string(body)) != "null" {
			t.Fatalf("delete %d not visible: %d %s", i, status, body)
		}
	}
}

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "customer", platformtest.Config(t), platform.NoConfig{}, wire)
	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/customer", map[string]string{"name": "Ada", "email": "ada@example.com"}, 200, &ids)
	id := ids[0]
	unknown := "2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11"
	cases := []platformtest.BadRequest{
		platformtest.Bad("malformed JSON", "POST", "/customer", `{"name": "x",`, 400),
		platformtest.Bad("not an object", "POST", "/customer", `"ada"`, 400),
		platformtest.Bad("empty body", "POST", "/customer", ``, 400),
		platformtest.Bad("empty list", "POST", "/customers", `[]`, 400),
		platformtest.Bad("wrong type", "POST", "/customer", `{"name": 5, "email": "a@b.c"}`, 400),
		platformtest.Bad("missing name", "POST", "/customer", `{"email": "a@b.c"}`, 400),
		platformtest.Bad("empty name", "POST", "/customer", `{"name": " ", "email": "a@b.c"}`, 400),
		platformtest.Bad("missing email", "POST", "/customer", `{"name": "x"}`, 400),
		platformtest.Bad("bad email", "POST", "/customer", `{"name": "x", "email": "nope"}`, 400),
		platformtest.Bad("unknown field", "POST", "/customer", `{"name": "x", "email": "a@b.c", "age": 3}`, 400),
		platformtest.Bad("one bad item spoils the batch", "POST", "/customers", `[{"name": "x", "email": "a@b.c"}, {"name": ""}]`, 400),
		platformtest.Bad("trailing data", "POST", "/customer", `{"name": "x", "email": "a@b.c"} {}`, 400),
		platformtest.Bad("trailing bracket", "POST", "/customer", `{"name": "x", "email": "a@b.c"}]`, 400),
		platformtest.Bad("too large", "POST", "/customers", `[`+strings.Repeat(`{"name": "x", "email": "a@b.c"},`, 3000)+`{"name": "x", "email": "a@b.c"}]`, 413),
		platformtest.Bad("text/plain", "POST", "/customer", platformtest.Typed("text/plain", `{"name": "x", "email": "a@b.c"}`), 415),
		platformtest.Bad("a form", "POST", "/customer", platformtest.Typed("application/x-www-form-urlencoded", `{"name": "x", "email": "a@b.c"}`), 415),
		platformtest.Bad("no Content-Type", "POST", "/customers", platformtest.Typed("", `{"name": "x", "email": "a@b.c"}`), 415),
		platformtest.Bad("PUT text/plain", "PUT", "/customer/"+id, platformtest.Typed("text/plain", `{"name": "x", "email": "a@b.c"}`), 415),
		platformtest.Bad("batch over MaxBatch", "POST", "/customers", slices.Repeat([]map[string]string{{"name": "x", "email": "a@b.c"}}, platformtest.MaxBatch+1), 413),
		platformtest.Bad("name of 201 characters", "POST", "/customer", map[string]string{"name": strings.Repeat("é", 201), "email": "a@b.c"}, 400),
		platformtest.Bad("NUL in the name", "POST", "/customer", map[string]string{"name": "Ada\x00", "email": "a@b.c"}, 400),
		platformtest.Bad("line break in the name", "POST", "/customer", map[string]string{"name": "Ada\r\nBcc: x@evil.example", "email": "a@b.c"}, 400),
		platformtest.Bad("tab in the name", "POST", "/customer", map[string]string{"name": "Ada\tL", "email": "a@b.c"}, 400),
		platformtest.Bad("e-mail without a dot in the domain", "POST", "/customer", map[string]string{"name": "x", "email": "a@b"}, 400),
		platformtest.Bad("e-mail to an IP literal", "POST", "/customer", map[string]string{"name": "x", "email": "a@[127.0.0.1]"}, 400),
		platformtest.Bad("e-mail to an IP address", "POST", "/customer", map[string]string{"name": "x", "email": "a@127.0.0.1"}, 400),
		platformtest.Bad("e-mail with a display name", "POST", "/customer", map[string]string{"name": "x", "email": "Ada <a@b.c>"}, 400),
		platformtest.Bad("e-mail of 255 characters", "POST", "/customer", map[string]string{"name": "x", "email": strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 58) + ".com"}, 400),
		platformtest.Bad("key in capitals", "POST", "/customer", `{"NAME": "x", "email": "a@b.c"}`, 400),
		platformtest.Bad("key in another case", "POST", "/customer", `{"name": "x", "Email": "a@b.c"}`, 400),
		platformtest.Bad("key given twice", "POST", "/customer", `{"name": "x", "email": "a@b.c", "name": "y"}`, 400),
		platformtest.Bad("key given twice in a batch", "POST", "/customers", `[{"name": "x", "email": "a@b.c"}, {"email": "a@b.c", "name": "x", "email": "b@b.c"}]`, 400),
		platformtest.Bad("PUT non-UUID id", "PUT", "/customer/42", `{"name": "x", "email": "a@b.c"}`, 400),
		platformtest.Bad("PUT unknown id", "PUT", "/customer/"+unknown, `{"name": "x", "email": "a@b.c"}`, 404),
		platformtest.Bad("PUT invalid body", "PUT", "/customer/"+id, `{"name": "", "email": "a@b.c"}`, 400),
		platformtest.Bad("DELETE unknown id", "DELETE", "/customer/"+unknown, nil, 404),
		platformtest.Bad("DELETE non-UUID id", "DELETE", "/customers/x", nil, 400),
		platformtest.Bad("GET non-UUID id", "GET", "/customer/x", nil, 400),
		platformtest.Bad("limit 0", "GET", "/customers?limit=0", nil, 400),
		platformtest.Bad("negative limit", "GET", "/customers?limit=-1", nil, 400),
		platformtest.Bad("limit not a number", "GET", "/customers?limit=ten", nil, 400),
		platformtest.Bad("empty limit", "GET", "/customers?limit=", nil, 400),
		platformtest.Bad("limit over the most", "GET", "/customers?limit=1001", nil, 400),
		platformtest.Bad("after not a UUID", "GET", "/customers?limit=2&after=x", nil, 400),
		platformtest.Bad("after without a limit", "GET", "/customers?after="+id, nil, 400),
		platformtest.Bad("wrong method", "PATCH", "/customer/"+id, `{}`, 405),
		platformtest.Bad("no such route", "GET", "/nothing", nil, 404),
	}
	platformtest.RejectAll(t, app, srv.URL, "customer", cases)
	var got map[string]any
	platformtest.JSON(t, "GET", srv.URL+"/customer/"+id, nil, http.StatusOK, &got)
	if got["name"] != "Ada" {
		t.Fatalf("bad input changed the customer: %v", got)
	}
}

// A delete is final: replacements racing with it either come before it or
// find the customer gone (404); none brings it back.
func TestReplacementsRacingADeleteDoNotResurrect(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "customer", platformtest.Config(t), platform.NoConfig{}, wire)
	for round := range 20 {
		var ids []string
		platformtest.JSON(t, "POST", srv.URL+"/customer", map[string]string{"name": "Ada", "email": "ada@example.com"}, 200, &ids)
		n := 0
		statuses, _ := platformtest.Concurrently(t, 11, func() (string, string, any) {
			n++
			if n == 6 {
				return "DELETE", srv.URL + "/customer/" + ids[0], nil
			}
			return "PUT", srv.URL + "/customer/" + ids[0], map[string]string{"name": fmt.Sprint("Ada ", n), "email": "ada@example.com"}
		})
		if statuses[200]+statuses[404] != 11 {
			t.Fatalf("round %d: answers %v", round, statuses)
		}
		if status, body := platformtest.Do(t, "GET", srv.URL+"/customer/"+ids[0], nil); strings.TrimSpace(string(body)) != "null" {
			t.Fatalf("round %d: deleted customer came back: %d %s (answers %v)", round, status, body, statuses)
		}
	}
}

// A GET answers the entity's version as its ETag; a PUT or DELETE with
// If-Match goes ahead only while the entity is at that version, also
// against a change that lands between its read and its commit.
func TestIfMatchRefusesAChangeOfAnotherVersion(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "customer", platformtest.Config(t), platform.NoConfig{}, wire)
	var ids []string
	platformtest.JSON(t, "POST", srv.URL+"/customer", map[string]string{"name": "Ada", "email": "ada@example.com"}, 200, &ids)
	url := srv.URL + "/customers/" + ids[0]
	etag := func() string {
		t.Helper()
		status, h, _, err := platformtest.SendWith("GET", url, nil, nil)
		if err != nil || status != 200 {
			t.Fatalf("GET: %d %v", status, err)
		}
		return h.Get("ETag")
	}
	send := func(method, ifMatch string, body any) (int, string) {
		t.Helper()
		status, _, data, err := platformtest.SendWith(method, url, body, http.Header{"If-Match": {ifMatch}})
		if err != nil {
			t.Fatal(err)
		}
		return status, string(data)
	}
	if tag := etag(); tag != `"1"` {
		t.Fatalf("ETag %q of a new customer, want \"1\"", tag)
	}
	ada := map[string]string{"name": "Ada L", "email": "ada@example.com"}
	if status, body := send("PUT", `"1"`, ada); status != 200 || etag() != `"2"` {
		t.Fatalf("PUT with the current ETag: %d %s, now %s", status, body, etag())
	}
	for _, stale := range []string{`"1"`, `W/"2"`, `2`} {
		if status, body := send("PUT", stale, ada); status != http.StatusPreconditionFailed || !strings.Contains(body, `"error"`) {
			t.Fatalf("PUT with If-Match %s: %d %s", stale, status, body)
		}
	}
	if status, body := send("DELETE", `"1"`, nil); status != http.StatusPreconditionFailed {
		t.Fatalf("DELETE with a stale ETag: %d %s", status, body)
	}
	// Many writers with the same ETag: one wins, the others see 412.
	won := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 20 {
		wg.Go(func() {
			status, _, _, err := platformtest.SendWith("PUT", url, map[string]string{"name": fmt.Sprint("Ada ", i), "email": "ada@example.com"}, http.Header{"If-Match": {`"2"`}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case status == 200:
				won++
			case status != http.StatusPreconditionFailed:
				t.Errorf("concurrent PUT: %d", status)
			}
		})
	}
	wg.Wait()
	if won != 1 || etag() != `"3"` {
		t.Fatalf("%d of 20 PUTs with one ETag went ahead, now %s", won, etag())
	}
	if status, body := send("DELETE", `"3"`, nil); status != 200 {
		t.Fatalf("DELETE with the current ETag: %d %s", status, body)
	}
	// Without If-Match, as before.
	platformtest.JSON(t, "POST", srv.URL+"/customer", map[string]string{"name": "Bob", "email": "bob@example.com"}, 200, &ids)
	platformtest.JSON(t, "PUT", srv.URL+"/customer/"+ids[0], map[string]string{"name": "Bob B", "email": "bob@example.com"}, 200, nil)
	platformtest.JSON(t, "DELETE", srv.URL+"/customer/"+ids[0], nil, 200, nil)
}

// The error of a list names its bad item, counting from 1, whether the item
// cannot be decoded or is invalid; nothing of the list is written.
func TestTheErrorOfAListNamesItsBadItem(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "customer", platformtest.Config(t), platform.NoConfig{}, wire)
	for body, want := range map[string]string{
		`[{"name": "x", "email": "a@b.c"}, {"name": "y", "email": "b@b.c", "age": 3}, {"name": "z", "email": "c@b.c"}]`: `item 2 of 3: unknown field "age"`,
		`[{"name": "x", "email": "a@b.c"}, {"name": "y", "email": 5}]`:                                                  `item 2 of 2: field "email"`,
		`[{"name": "x", "email": "a@b.c"}, {"name": "y", "email": "b@b.c"}, {"name": " ", "email": "c@b.c"}]`:           "item 3 of 3: name",
	} {
		if msg := platformtest.Rejected(t, "POST", srv.URL+"/customers", body, 400); !strings.HasPrefix(msg, want) {
			t.Errorf("%s: error %q, want it to begin %q", body, msg, want)
		}
	}
	var all []map[string]any
	platformtest.JSON(t, "GET", srv.URL+"/customers", nil, 200, &all)
	if len(all) != 0 {
		t.Fatalf("%d customers written", len(all))
	}
}

// A command whose append landed but whose answer was lost (a read timeout:
// the service answered 503) is not done
// again when it is sent again with its Idempotency-Key: the retry answers
// what the first try did, and nothing is written twice.
func TestARetryWithTheKeyAfterALostAnswerIsNotDoneTwice(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Client(t)
	var lose redistest.LostAnswer
	rdb.AddHook(&lose)
	app, svc, _ := platformtest.StartOn(t, "customer", platformtest.Config(t), rdb, platform.NoConfig{}, wire)
	events := func() (n int64) {
		for _, part := range app.Store.Partitions("customer") {
			info, err := app.Store.Info(t.Context(), part)
			if err != nil {
				t.Fatal(err)
			}
			n += info.Length
		}
		return n
	}
	platformtest.JSON(t, "POST", svc.URL+"/customer", map[string]string{"name": "Bob", "email": "bob@example.com"}, 200, nil)

	// lost sends a command whose append's answer is lost: 503, with the
	// append written; then it sends it again with the same key.
	lost := func(method, path string, body any) []byte {
		t.Helper()
		key := http.Header{platform.IdempotencyHeader: {uuid.NewString()}}
		before := events()
		lose.Arm("evalsha")
		status, _, answer, err := platformtest.SendWith(method, svc.URL+path, body, key)
		if err != nil || status != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with its answer lost: %d %s %v, want 503", method, path, status, answer, err)
		}
		if events() != before+1 {
			t.Fatalf("%s %s with its answer lost: %d events, want %d", method, path, events(), before+1)
		}
		status, _, answer, err = platformtest.SendWith(method, svc.URL+path, body, key)
		if err != nil || status != http.StatusOK || events() != before+1 {
			t.Fatalf("%s %s again: %d %s %v, %d events, want 200 and %d", method, path, status, answer, err, events(), before+1)
		}
		return answer
	}
	var ids []string
	if err := json.Unmarshal(lost("POST", "/customers", []map[string]string{{"name": "Ada", "email": "ada@example.com"}}), &ids); err != nil || len(ids) != 1 {
		t.Fatalf("ids %v %v", ids, err)
	}
	lost("PUT", "/customer/"+ids[0], map[string]string{"name": "Ada L", "email": "ada@l.org"})
	lost("DELETE", "/customer/"+ids[0], nil)
	var all []map[string]any
	platformtest.JSON(t, "GET", svc.URL+"/customers", nil, 200, &all)
	if len(all) != 1 || all[0]["name"] != "Bob" {
		t.Fatalf("customers %v, want Bob alone", all)
	}
}

// A full Redis (maxmemory, noeviction) refuses a command before it writes
// anything: 503 in JSON, nothing written, reads go on, and the command sent
// again once there is room is done once.
func TestAFullRedisRefusesCommandsWith503AndWritesNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	admin := srv.Client(t)
	app, svc, _ := platformtest.StartOn(t, "customer", platformtest.Config(t), admin, platform.NoConfig{}, wire)
	var ids []string
	platformtest.JSON(t, "POST", svc.URL+"/customer", map[string]string{"name": "Bob", "email": "bob@example.com"}, 200, &ids)
	if err := admin.ConfigSet(t.Context(), "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	before := redistest.Snapshot(t, app.Redis, "")
	key := http.Header{platform.IdempotencyHeader: {uuid.NewString()}}
	ada := map[string]string{"name": "Ada", "email": "ada@example.com"}
	for _, c := range []struct {
		method, path string
		body         any
	}{{"POST", "/customer", ada}, {"PUT", "/customer/" + ids[0], ada}, {"DELETE", "/customer/" + ids[0], nil}} {
		status, header, body, err := platformtest.SendWith(c.method, svc.URL+c.path, c.body, key)
		if err != nil || status != http.StatusServiceUnavailable || header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), "out of memory") {
			t.Fatalf("%s %s on a full Redis: %d %s %v, want 503 out of memory in JSON", c.method, c.path, status, body, err)
		}
	}
	if after := redistest.Snapshot(t, app.Redis, ""); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused command wrote: %d keys before, %d after", len(before), len(after))
	}
	platformtest.JSON(t, "GET", svc.URL+"/customer/"+ids[0], nil, 200, nil)
	if err := admin.ConfigSet(t.Context(), "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if status, _, body, err := platformtest.SendWith("POST", svc.URL+"/customer", ada, key); err != nil || status != http.StatusOK {
			t.Fatalf("POST once there is room: %d %s %v", status, body, err)
		}
	}
	var all []map[string]any
	platformtest.JSON(t, "GET", svc.URL+"/customers", nil, 200, &all)
	if len(all) != 2 {
		t.Fatalf("%d customers, want Bob and Ada", len(all))
	}
}
