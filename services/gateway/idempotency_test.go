package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
)

// orderService answers each POST after slow with the ids of new orders, as
// the order service does once its batch has committed, and counts them.
func orderService(t *testing.T, slow time.Duration, status ...int) (url string, created *atomic.Int64) {
	created = &atomic.Int64{}
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(slow)
		n := created.Add(1)
		code := http.StatusOK
		if int(n) <= len(status) {
			code = status[n-1]
		}
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, n))
		w.Header().Set("Link", fmt.Sprintf(`</orders?after=%d>; rel="next"`, n))
		platform.WriteJSON(w, code, []string{uuid.NewString()})
	}))
	t.Cleanup(owner.Close)
	return owner.URL, created
}

// send sends a command with an Idempotency-Key and returns the answer.
func send(t *testing.T, method, url, key, body string) (int, string, string) {
	t.Helper()
	status, header, b := sendWith(t, method, url, key, body, http.Header{"Content-Type": {"application/json"}})
	return status, header.Get("Content-Type"), b
}

// sendWith is send with the request's headers, answering the response's.
func sendWith(t *testing.T, method, url, key, body string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header = header.Clone()
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// gatewayTo starts the gateway with the order service at url, waiting for
// answers for wait.
func gatewayTo(t *testing.T, url string, wait time.Duration) string {
	base := platformtest.Config(t)
	base.RequestTimeout = wait
	_, srv := startWith(t, base, map[string]string{"order": url}, func(c *config) { c.CommandTimeout = 5 * time.Second })
	return srv.URL
}

const batch = `[{"customer_id":"2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11","product_ids":["9b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11"]}]`

// A batch that commits after the gateway stopped waiting is a 503; the
// client's retry with the same key gets the batch's ids and orders nothing.
func TestARetryWithTheSameKeyGetsTheFirstAnswerAndOrdersNothingNew(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 400*time.Millisecond)
	url := gatewayTo(t, owner, 200*time.Millisecond)
	key := uuid.NewString()
	if status, _, body := send(t, "POST", url+"/orders", key, batch); status != http.StatusServiceUnavailable {
		t.Fatalf("the slow batch: %d %s, want 503", status, body)
	}
	var first string
	redistest.Eventually(t, 10*time.Second, "the retry answered", func() bool {
		status, ctype, body := send(t, "POST", url+"/orders", key, batch) // 409 while the batch runs
		first = body
		return status == http.StatusOK && ctype == "application/json"
	})
	status, _, again := send(t, "POST", url+"/orders", key, batch)
	if status != http.StatusOK || again != first || created.Load() != 1 {
		t.Fatalf("retries answered %d %s and %s; %d batches ordered, want 1 and the same ids", status, first, again, created.Load())
	}
	// Another key is another batch.
	send(t, "POST", url+"/orders", uuid.NewString(), batch)
	redistest.Eventually(t, 10*time.Second, "another key ordered", func() bool { return created.Load() == 2 })
}

func TestTheSameKeyWithAnotherBodyIs422(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 0)
	url := gatewayTo(t, owner, 5*time.Second)
	key := uuid.NewString()
	send(t, "POST", url+"/orders", key, batch)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/orders", strings.Replace(batch, "9b0", "8b0", 1)}, {"POST", "/order", batch},
		{"PUT", "/orders/2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11", batch},
	} {
		status, ctype, body := send(t, c.method, url+c.path, key, c.body)
		if status != http.StatusUnprocessableEntity || ctype != "application/json" || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s with a used key: %d %s %s, want 422 in JSON", c.method, c.path, status, ctype, body)
		}
	}
	if created.Load() != 1 {
		t.Fatalf("%d batches ordered, want 1", created.Load())
	}
}

// Requests with one key at once: the first runs, the others wait for its
// answer.
func TestConcurrentRequestsWithOneKeyRunOnce(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 300*time.Millisecond)
	url := gatewayTo(t, owner, 5*time.Second)
	key := uuid.NewString()
	var wg sync.WaitGroup
	answers := make([]string, 8)
	for i := range answers {
		wg.Go(func() {
			status, _, body := send(t, "DELETE", url+"/orders/2b0ac0b0-8c43-4e5a-9a3f-6a3b7f1e0c11", key, "")
			answers[i] = http.StatusText(status) + " " + body
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a != answers[0] || !strings.HasPrefix(a, "OK [") {
			t.Fatalf("answers %q, want one 200 for all", answers)
		}
	}
	if created.Load() != 1 {
		t.Fatalf("the owner ran %d times, want 1", created.Load())
	}
}

// A 5xx is not kept: the client may try again, and this time it runs; the
// key stays the request's all the same.
func TestA5xxIsNotKept(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 0, http.StatusServiceUnavailable, http.StatusConflict)
	url := gatewayTo(t, owner, 5*time.Second)
	key := uuid.NewString()
	for i, want := range []int{503, 409, 409} { // the 409 is kept
		if status, _, body := send(t, "POST", url+"/orders", key, batch); status != want {
			t.Fatalf("try %d: %d %s, want %d", i+1, status, body, want)
		}
	}
	if created.Load() != 2 {
		t.Fatalf("the owner ran %d times, want 2", created.Load())
	}
}

// After a 5xx, or no answer in time, nobody knows what the owner did: the
// key still names its request, and another request with it is 422.
func TestAKeyWhoseOutcomeIsUnknownStillNamesItsRequest(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 0, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	url := gatewayTo(t, owner, 5*time.Second)
	key := uuid.NewString()
	if status, _, body := send(t, "POST", url+"/orders", key, batch); status != http.StatusServiceUnavailable {
		t.Fatalf("first try: %d %s, want 503", status, body)
	}
	if status, _, body := send(t, "POST", url+"/orders", key, strings.Replace(batch, "9b0", "8b0", 1)); status != http.StatusUnprocessableEntity {
		t.Fatalf("another body with the key: %d %s, want 422", status, body)
	}
	for i, want := range []int{503, 200, 200} {
		if status, _, body := send(t, "POST", url+"/orders", key, batch); status != want {
			t.Fatalf("try %d: %d %s, want %d", i+2, status, body, want)
		}
	}
	if created.Load() != 3 {
		t.Fatalf("the owner ran %d times, want 3", created.Load())
	}
}

// A key is one request whatever its path: the same key on another
// collection is 422, not a second command.
func TestAKeyIsOneRequestAcrossCollections(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 0)
	_, srv := startWith(t, platformtest.Config(t), map[string]string{"order": owner, "customer": owner, "product": owner},
		func(c *config) { c.CommandTimeout = 5 * time.Second })
	key := uuid.NewString()
	if status, _, body := send(t, "POST", srv.URL+"/customer", key, `{"name":"Ada","email":"ada@example.com"}`); status != http.StatusOK {
		t.Fatalf("POST /customer: %d %s", status, body)
	}
	if status, _, body := send(t, "POST", srv.URL+"/product", key, `{"name":"Ada","email":"ada@example.com"}`); status != http.StatusUnprocessableEntity {
		t.Fatalf("POST /product with the key of a customer: %d %s, want 422", status, body)
	}
	if created.Load() != 1 {
		t.Fatalf("the owners ran %d times, want 1", created.Load())
	}
}

// An answer that says the request could not run as sent (a wrong
// Content-Type, a stale If-Match) is not kept: the corrected request, with
// the same key, runs. Headers that change a request's meaning are part of
// it: after a 200, another If-Match with the key is 422.
func TestARequestThatCouldNotRunFreesItsKey(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 0, http.StatusUnsupportedMediaType, http.StatusOK, http.StatusPreconditionFailed)
	url := gatewayTo(t, owner, 5*time.Second)
	key := uuid.NewString()
	if status, _, body := sendWith(t, "POST", url+"/orders", key, batch, http.Header{"Content-Type": {"text/plain"}}); status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d %s, want 415", status, body)
	}
	if status, _, body := send(t, "POST", url+"/orders", key, batch); status != http.StatusOK {
		t.Fatalf("corrected: %d %s, want 200", status, body)
	}
	json := http.Header{"Content-Type": {"application/json"}}
	stale, fresh := json.Clone(), json.Clone()
	stale.Set("If-Match", `"1"`)
	fresh.Set("If-Match", `"2"`)
	if status, _, body := sendWith(t, "PUT", url+"/orders/x", key, batch, stale); status != http.StatusUnprocessableEntity {
		t.Fatalf("the key again with If-Match: %d %s, want 422", status, body)
	}
	key = uuid.NewString()
	if status, _, body := sendWith(t, "PUT", url+"/orders/x", key, batch, stale); status != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %s, want 412", status, body)
	}
	if status, _, body := sendWith(t, "PUT", url+"/orders/x", key, batch, fresh); status != http.StatusOK {
		t.Fatalf("fresh If-Match: %d %s, want 200", status, body)
	}
	if created.Load() != 4 {
		t.Fatalf("the owner ran %d times, want 4", created.Load())
	}
}

// A replay is the first answer whole: its ETag and Link too.
func TestAReplayKeepsTheAnswersHeaders(t *testing.T) {
	t.Parallel()
	owner, _ := orderService(t, 0)
	url := gatewayTo(t, owner, 5*time.Second)
	key := uuid.NewString()
	json := http.Header{"Content-Type": {"application/json"}}
	_, first, _ := sendWith(t, "POST", url+"/orders", key, batch, json)
	_, again, _ := sendWith(t, "POST", url+"/orders", key, batch, json)
	for _, h := range []string{"ETag", "Link", "Content-Type"} {
		if first.Get(h) == "" || again.Get(h) != first.Get(h) {
			t.Errorf("%s: first %q, replayed %q", h, first.Get(h), again.Get(h))
		}
	}
}

// Requests that wait for another with their key look again at growing
// intervals: 20 of them for a second cost Redis a few hundred commands, not
// one every 20 ms each.
func TestWaitersLookAgainAtGrowingIntervals(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, time.Second)
	rdb, _ := redistest.Client(t)
	var sent commands
	rdb.AddHook(&sent)
	base := platformtest.Config(t)
	_, srv := startOn(t, base, rdb, map[string]string{"order": owner}, func(c *config) { c.CommandTimeout = 5 * time.Second })
	key := uuid.NewString()
	sent.n.Store(0)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if status, _, body := send(t, "POST", srv.URL+"/orders", key, batch); status != http.StatusOK {
				t.Errorf("%d %s", status, body)
			}
		})
	}
	wg.Wait()
	if n := sent.n.Load(); created.Load() != 1 || n > 300 {
		t.Fatalf("the owner ran %d times; %d Redis commands for 20 requests, want at most 300", created.Load(), n)
	}
	t.Logf("%d Redis commands for 20 requests on one key", sent.n.Load())
}

// commands counts the commands a client sends.
type commands struct{ n atomic.Int64 }

func (*commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestABadIdempotencyKeyIs400(t *testing.T) {
	t.Parallel()
	owner, created := orderService(t, 0)
	url := gatewayTo(t, owner, 5*time.Second)
	for _, key := range []string{"", strings.Repeat("k", 201), "tab\tbed", "é"} {
		if status, _, body := send(t, "POST", url+"/orders", key, batch); status != http.StatusBadRequest {
			t.Errorf("key %q: %d %s, want 400", key, status, body)
		}
	}
	if status, _, _ := send(t, "POST", url+"/orders", strings.Repeat("k", 200), batch); status != http.StatusOK || created.Load() != 1 {
		t.Fatalf("a key of 200 characters: %d", status)
	}
}

// A 5xx that Redis would not let the gateway keep (it refused writes: its
// replica away, NOREPLICAS) leaves the key claimed by a run that is over.
// The gateway tries to keep it again until Redis takes it, so that the
// client's retry with the key runs once Redis takes writes again, not only
// when the claim expires (COMMAND_TIMEOUT and 5 s: 35 s by default; each
// retry meanwhile waited REQUEST_TIMEOUT and was 409).
func TestARetryRunsOnceRedisTakesWritesAgainThoughTheOutcomeWasNotKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.NewServer(t).Client(t)
	refuse := func(replicas string) {
		if err := rdb.ConfigSet(ctx, "min-replicas-to-write", replicas).Err(); err != nil {
			t.Error(err)
		}
	}
	var runs atomic.Int64
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if runs.Add(1) == 1 {
			refuse("1") // no replica: Redis refuses writes from now
			platform.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not replicated"})
			return
		}
		platform.WriteJSON(w, http.StatusOK, []string{uuid.NewString()})
	}))
	t.Cleanup(owner.Close)
	base := platformtest.Config(t)
	base.RequestTimeout = 500 * time.Millisecond
	_, gw := startOn(t, base, rdb, map[string]string{"order": owner.URL}, func(c *config) { c.CommandTimeout = 30 * time.Second })
	key := uuid.NewString()
	if status, _, body := send(t, "POST", gw.URL+"/orders", key, batch); status != http.StatusServiceUnavailable {
		t.Fatalf("first try: %d %s, want 503", status, body)
	}
	// Meanwhile the claim stays: the retry waits for it, and does not run.
	if status, _, body := send(t, "POST", gw.URL+"/orders", key, batch); status != http.StatusConflict || runs.Load() != 1 {
		t.Fatalf("a retry while Redis refuses writes: %d %s, the owner ran %d times; want 409, once", status, body, runs.Load())
	}
	refuse("0")
	redistest.Eventually(t, 10*time.Second, "a retry runs", func() bool {
		status, _, _ := send(t, "POST", gw.URL+"/orders", key, batch)
		return status == http.StatusOK
	})
	if n := runs.Load(); n != 2 {
		t.Errorf("the owner ran %d times, want 2", n)
	}
}
