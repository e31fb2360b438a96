package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// sseEvent is one block of an event stream; a heartbeat is a comment.
type sseEvent struct {
	ID, Event, Data string
	Comment         bool
}

// watch reads a gateway's /events as a browser would, with the Last-Event-ID
// given unless empty, until the test ends or close is called.
type watch struct {
	resp   *http.Response
	events chan sseEvent
	end    error // why the body ended, once events is closed
}

func openEvents(t *testing.T, adminURL, lastID string) *watch {
	t.Helper()
	return openEventsFrom(t, http.DefaultClient, adminURL, lastID)
}

// openEventsFrom is openEvents with a client of the test's own.
func openEventsFrom(t *testing.T, client *http.Client, adminURL, lastID string) *watch {
	t.Helper()
	req, _ := http.NewRequest("GET", adminURL+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /events: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	w := &watch{resp: resp, events: make(chan sseEvent, 100)}
	go func() {
		defer close(w.events)
		r := bufio.NewReader(resp.Body)
		var e sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				w.end = err
				return
			}
			line = strings.TrimSuffix(line, "\n")
			field, value, _ := strings.Cut(line, ": ")
			switch {
			case line == "":
				w.events <- e
				e = sseEvent{}
			case strings.HasPrefix(line, ":"):
				e.Comment = true
			case field == "id":
				e.ID = value
			case field == "event":
				e.Event = value
			case field == "data":
				e.Data += value
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *watch) close() { w.resp.Body.Close() }

// next is the next event that is not a heartbeat.
func (w *watch) next(t *testing.T) sseEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-w.events:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if !e.Comment {
				return e
			}
		case <-deadline:
			t.Fatal("no event within 10 s")
		}
	}
}

// rest is every event but heartbeats left on w up to the end of its stream,
// which must come by itself, cleanly, within 10 s.
func (w *watch) rest(t *testing.T) []sseEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var out []sseEvent
	for {
		select {
		case e, ok := <-w.events:
			if !ok {
				if w.end != io.EOF {
					t.Fatalf("the stream ended with %v, want its clean end", w.end)
				}
				return out
			}
			if !e.Comment {
				out = append(out, e)
			}
		case <-deadline:
			t.Fatal("the stream did not end within 10 s")
		}
	}
}

// nextEntry is the next stream entry, after the "streams" event that a
// stream starts with.
func (w *watch) nextEntry(t *testing.T) (entry, string) {
	t.Helper()
	e := w.next(t)
	if e.Event == "streams" {
		e = w.next(t)
	}
	var got entry
	if err := json.Unmarshal([]byte(e.Data), &got); err != nil || e.Event != "" {
		t.Fatalf("event %+v is no stream entry: %v", e, err)
	}
	return got, e.ID
}

// positions reads an event id: stream key → stream ID.
func positions(t *testing.T, id string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range strings.Split(id, ",") {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			t.Fatalf("event id %q: %q is no stream=id", id, p)
		}
		out[k] = v
	}
	return out
}

func customer(t *testing.T, app *platform.App, name string) eventstore.Event {
	return platformtest.Created(t, app.Cache, shop.Customers.Kind, shop.Customer{Name: name, Email: strings.ToLower(name) + "@example.com"})
}

func TestEventsStreamAppendedEntriesWithTheirPositions(t *testing.T) {
	t.Parallel()
	app, srv := startWith(t, platformtest.Config(t), nil, func(*config) {})
	before := customer(t, app, "Before") // on the stream before the watcher came: not sent
	w := openEvents(t, srv.Admin.URL, "")
	first := w.next(t)
	var streams []string
	if err := json.Unmarshal([]byte(first.Data), &streams); err != nil || first.Event != "streams" || len(streams) != len(shop.Domain.Partitions(app.Store)) {
		t.Fatalf("first event %+v, want the %d streams", first, len(shop.Domain.Partitions(app.Store)))
	}
	customers := app.Store.StreamKey(app.Store.PartitionOf("customer", before.EntityID))
	orders := app.Store.StreamKey(app.Store.Partitions("order")[0])
	if start := positions(t, first.ID); start[customers] != before.StreamID || start[orders] != "0-0" || len(start) != len(streams) {
		t.Fatalf("the stream starts at %v, want %s at %s and %s at 0-0", start, customers, before.StreamID, orders)
	}
	// One stream at a time: the streams interleave in no set order.
	ada := customer(t, app, "Ada")
	sent(t, w, app, ada)
	sent(t, w, app, platformtest.Created(t, app.Cache, shop.Orders.Kind, shop.Order{CustomerID: ada.EntityID, ProductIDs: []string{ada.EntityID}}))
}

// sent wants the next entry on w to be the event want, at its position.
func sent(t *testing.T, w *watch, app *platform.App, want eventstore.Event) {
	t.Helper()
	got, id := w.nextEntry(t)
	if got.ID != want.StreamID || got.EntityID != want.EntityID || got.Type != want.Type || got.Stream != app.Store.StreamKey(app.Store.PartitionOf(want.EntityType, want.EntityID)) ||
		got.EventID != want.ID || got.Version != "1" {
		t.Fatalf("got %+v, want %s %s %s at %s", got, want.Type, want.EntityID, want.ID, want.StreamID)
	}
	if pos := positions(t, id); pos[got.Stream] != want.StreamID {
		t.Fatalf("event id %s does not hold %s=%s", id, got.Stream, want.StreamID)
	}
}

// A client that reconnects with the last id it saw gets every entry after it,
// in every stream, once: neither one it had nor one it missed is lost.
func TestEventsResumeAfterTheLastEventID(t *testing.T) {
	t.Parallel()
	app, srv := startWith(t, platformtest.Config(t), nil, func(*config) {})
	w := openEvents(t, srv.Admin.URL, "")
	start := w.next(t).ID
	w.close()
	// Appended before the client saw any entry: the first event's id resumes there.
	a := customer(t, app, "Ada")
	w = openEvents(t, srv.Admin.URL, start)
	if again := w.next(t); again.Event != "streams" || again.ID != start {
		t.Fatalf("the resumed stream starts with %+v, want the streams at %s", again, start)
	}
	sent(t, w, app, a)
	b := platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "Tea", Price: 350})
	got, lastSeen := w.nextEntry(t)
	if got.ID != b.StreamID {
		t.Fatalf("got %+v, want the product at %s", got, b.StreamID)
	}
	w.close()
	missed := []eventstore.Event{customer(t, app, "Bob"), platformtest.Created(t, app.Cache, shop.Products.Kind, shop.Product{Name: "Cake", Price: 420}),
		customer(t, app, "Cy")}
	w = openEvents(t, srv.Admin.URL, lastSeen)
	last := customer(t, app, "Last") // while it watches
	want := []string{missed[0].StreamID + " " + missed[0].EntityID, missed[1].StreamID + " " + missed[1].EntityID,
		missed[2].StreamID + " " + missed[2].EntityID, last.StreamID + " " + last.EntityID}
	// Each stream keeps its order, so an entry sent again would come before
	// the ones wanted on its stream.
	var seen []string
	for len(seen) < len(want) {
		got, _ := w.nextEntry(t)
		seen = append(seen, got.ID+" "+got.EntityID)
		if !slices.Contains(want, seen[len(seen)-1]) {
			t.Fatalf("after the reconnect got %v, want only %v", seen, want)
		}
	}
	slices.Sort(seen) // the streams interleave
	if want := slices.Sorted(slices.Values(want)); !slices.Equal(seen, want) {
		t.Fatalf("after the reconnect got\n%v\nwant\n%v", seen, want)
	}
}

// A client that resumes from a position the streams were trimmed past
// since gets the entries it missed from the archive, then the streams':
// each once, each stream's in order.
func TestEventsResumeFromTheArchiveBelowTheStreamsStart(t *testing.T) {
	t.Parallel()
	base := platformtest.Config(t)
	base.ArchiveURL = platformtest.ArchiveURL(t)
	app, srv := startWith(t, base, nil, func(*config) {})
	w := openEvents(t, srv.Admin.URL, "")
	start := w.next(t).ID
	w.close()
	var missed []eventstore.Event
	for i := range 12 {
		missed = append(missed, customer(t, app, fmt.Sprint("Missed", i)))
	}
	if n := platformtest.ArchiveAndTrim(t, app, "customer"); n < 6 {
		t.Fatalf("the trim took %d entries out of the streams, want most of the 12", n)
	}
	w = openEvents(t, srv.Admin.URL, start)
	last := customer(t, app, "Last") // while it watches
	want := map[string][]string{}    // stream → its entries' IDs, in order
	for _, e := range append(missed, last) {
		key := app.Store.StreamKey(app.Store.PartitionOf(e.EntityType, e.EntityID))
		want[key] = append(want[key], e.StreamID)
	}
	got := map[string][]string{}
	for range len(missed) + 1 {
		e, _ := w.nextEntry(t)
		got[e.Stream] = append(got[e.Stream], e.ID)
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after the resume got\n%v\nwant\n%v", got, want)
	}
}

// Heartbeats keep an idle stream alive, also past the server's read and
// write timeouts, which each write pushes back.
func TestEventsHeartbeatAndOutliveTheServersTimeouts(t *testing.T) {
	t.Parallel()
	app, _ := startWith(t, platformtest.Config(t), nil, func(c *config) { c.EventsHeartbeat = 50 * time.Millisecond })
	srv := httptest.NewUnstartedServer(app.Admin)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	w := openEvents(t, srv.URL, "")
	w.next(t)
	heartbeats := 0
	for until := time.Now().Add(time.Second); time.Now().Before(until); {
		select {
		case e, ok := <-w.events:
			if !ok {
				t.Fatalf("the stream ended after %d heartbeats", heartbeats)
			}
			if e.Comment {
				heartbeats++
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat within 5 s")
		}
	}
	if heartbeats < 5 {
		t.Fatalf("%d heartbeats in a second, want one every 50 ms", heartbeats)
	}
	a := customer(t, app, "Ada")
	if got, _ := w.nextEntry(t); got.ID != a.StreamID {
		t.Fatalf("after a second got %+v, want %s", got, a.StreamID)
	}
}

// An event stream ends with its client: the place it held is free again.
func TestEventsEndWhenTheClientGoes(t *testing.T) {
	t.Parallel()
	_, srv := startWith(t, platformtest.Config(t), nil, func(*config) {})
	var open []*watch
	for range maxWatchers {
		open = append(open, openEvents(t, srv.Admin.URL, ""))
	}
	platformtest.Rejected(t, "GET", srv.Admin.URL+"/events", nil, http.StatusServiceUnavailable)
	open[0].close()
	redistest.Eventually(t, 10*time.Second, "a place free after a client left", func() bool {
		return status(t, "GET", srv.Admin.URL+"/events", "") == http.StatusOK
	})
}

// One client address may hold EVENTS_PER_CLIENT streams, not all there may
// be: its next is a 429 JSON error, while its open streams go on and a client
// at another address still gets in.
func TestEventsPerClientCapIs429ForThatClientOnly(t *testing.T) {
	t.Parallel()
	app, srv := startWith(t, platformtest.Config(t), nil, func(c *config) { c.EventsPerClient = 2 })
	first, second := openEvents(t, srv.Admin.URL, ""), openEvents(t, srv.Admin.URL, "")
	resp, err := http.Get(srv.Admin.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests { // a stream: its body never ends
		t.Fatalf("a third stream from one address: %d, want 429", resp.StatusCode)
	}
	var e struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.Header.Get("Content-Type") != "application/json" || e.Error == "" {
		t.Fatalf("a third stream from one address: %s %q (%v), want a JSON error", resp.Header.Get("Content-Type"), e.Error, err)
	}
	// Every address in 127.0.0.0/8 is this machine's: another client's.
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	other := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	t.Cleanup(other.CloseIdleConnections)
	third := openEventsFrom(t, other, srv.Admin.URL, "")
	a := customer(t, app, "Ada")
	for _, w := range []*watch{first, second, third} {
		sent(t, w, app, a)
	}
	first.close()
	redistest.Eventually(t, 10*time.Second, "a place free for the client after one of its streams ended", func() bool {
		return status(t, "GET", srv.Admin.URL+"/events", "") == http.StatusOK
	})
}

// A stream ends by itself, cleanly, after EVENTS_MAX_AGE; a client that
// reconnects with the last id it saw gets every entry once, also those
// appended while it was away.
func TestEventsEndAfterTheirMaxAgeAndResume(t *testing.T) {
	t.Parallel()
	app, srv := startWith(t, platformtest.Config(t), nil, func(c *config) { c.EventsMaxAge = 200 * time.Millisecond })
	var seen []string
	last := ""
	// read takes every event of w to the end of its stream.
	read := func(w *watch) {
		for _, e := range w.rest(t) {
			last = e.ID
			if e.Event == "streams" {
				continue
			}
			var got entry
			if err := json.Unmarshal([]byte(e.Data), &got); err != nil {
				t.Fatalf("event %+v is no stream entry: %v", e, err)
			}
			seen = append(seen, got.ID+" "+got.EntityID)
		}
	}
	w := openEvents(t, srv.Admin.URL, "")
	a := customer(t, app, "Ada") // while it watches, or after it ended
	read(w)
	b := customer(t, app, "Bob") // after it ended
	want := []string{a.StreamID + " " + a.EntityID, b.StreamID + " " + b.EntityID}
	for conns := 1; !slices.Contains(seen, want[1]); conns++ {
		if conns == 50 {
			t.Fatalf("after %d streams got %v, want %v", conns, seen, want)
		}
		read(openEvents(t, srv.Admin.URL, last))
	}
	if !slices.Equal(seen, want) { // one customer stream: in order
		t.Fatalf("across the reconnects got %v, want %v, each once", seen, want)
	}
}

// status is the status of a request without a body, whose answer's body it
// does not wait for.
func status(t *testing.T, method, url, token string) int {
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestEventsRefuseABadLastEventID(t *testing.T) {
	t.Parallel()
	_, srv := startWith(t, platformtest.Config(t), nil, func(*config) {})
	for _, id := range []string{"x", "events:{customer}=1", "events:{customer}=1-0,nonsense"} {
		status, _, body, err := platformtest.SendWith("GET", srv.Admin.URL+"/events", nil, http.Header{"Last-Event-ID": {id}})
		if err != nil || status != http.StatusBadRequest || !strings.Contains(string(body), `"error"`) {
			t.Errorf("Last-Event-ID %q: %d %s %v, want a 400 JSON error", id, status, body, err)
		}
	}
}

// The groups route shows what a stopped consumer left: the entries it has
// yet to read (lag) and those it read and did not finish (pending).
func TestStreamsReportLagAndPendingOfAStoppedConsumer(t *testing.T) {
	t.Parallel()
	cfg := platformtest.Config(t)
	cfg.Partitions = 1 // every customer in one stream, whose figures are known
	app, srv := startWith(t, cfg, nil, func(*config) {})
	customer(t, app, "Ada")
	poison := customer(t, app, "Poison")
	var handled atomic.Int64
	consumer, err := app.Store.NewConsumer(eventstore.ConsumerConfig{
		Group: "crm", Name: "crm-1", Streams: []string{"customer"}, Block: 50 * time.Millisecond, RetryDelay: time.Hour,
		Handler: func(_ context.Context, e eventstore.Event) error {
			handled.Add(1)
			if e.EntityID == poison.EntityID {
				return errors.New("poison") // retried in an hour: pending meanwhile
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	redistest.Eventually(t, 10*time.Second, "both customers handled once", func() bool { return handled.Load() == 2 })
	stop()
	<-done
	for range 3 {
		customer(t, app, "Later")
	}
	var streams []streamView
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/streams", nil, http.StatusOK, &streams)
	if len(streams) != len(shop.Streams) {
		t.Fatalf("%d streams, want %d", len(streams), len(shop.Streams))
	}
	s := streams[slices.IndexFunc(streams, func(s streamView) bool { return s.Name == "customer" })]
	want := streamView{Stream: app.Store.StreamKey("customer"), Name: "customer", Length: 5, LastID: s.LastID,
		Groups: []groupView{{Name: "crm", Lag: 3, Pending: 1, Done: 1, Consumers: []consumerView{{Name: "crm-1", Pending: 1, IdleMS: s.Groups[0].Consumers[0].IdleMS}}}}}
	if g, _ := json.Marshal(s); string(g) != mustJSON(want) {
		t.Fatalf("customer stream\n%s\nwant\n%s", g, mustJSON(want))
	}
}

// The groups route shows what the archive archived, has yet to archive, and
// trimmed, as Redis counts them: archived are the entries group archive
// read and acked, trimmed those appended and no longer in the stream.
func TestStreamsReportWhatTheArchiveArchivedAndTrimmed(t *testing.T) {
	t.Parallel()
	cfg := platformtest.Config(t)
	cfg.Partitions = 1
	app, srv := startWith(t, cfg, nil, func(*config) {})
	for range 5 {
		customer(t, app, "Ada")
	}
	ctx, rdb, key := t.Context(), app.Redis, app.Store.StreamKey("customer")
	if err := rdb.XGroupCreate(ctx, key, "archive", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "archive", Consumer: "archiver", Streams: []string{key, ">"}, Count: 4}).Result()
	if err != nil {
		t.Fatal(err)
	}
	read := res[0].Messages
	rdb.XAck(ctx, key, "archive", read[0].ID, read[1].ID, read[2].ID) // the 4th is pending
	rdb.XTrimMinID(ctx, key, read[2].ID)
	var streams []streamView
	platformtest.JSON(t, "GET", srv.Admin.URL+"/ops/streams", nil, http.StatusOK, &streams)
	s := streams[slices.IndexFunc(streams, func(s streamView) bool { return s.Name == "customer" })]
	if s.Length != 3 || s.Trimmed != 2 || len(s.Groups) != 1 {
		t.Fatalf("customer stream: length %d, trimmed %d, groups %+v; want 3, 2 and group archive", s.Length, s.Trimmed, s.Groups)
	}
	if g := s.Groups[0]; g.Done != 3 || g.Lag != 1 || g.Pending != 1 {
		t.Errorf("group archive: done %d, lag %d, pending %d; want 3, 1, 1", g.Done, g.Lag, g.Pending)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// With a token, the page and its files are open (they hold no data and send
// the token themselves); the event stream and the groups need the token.
func TestTheDashboardPageIsOpenItsDataNeedsTheToken(t *testing.T) {
	t.Parallel()
	base := platformtest.Config(t)
	base.AdminToken = "s3cret"
	_, srv := startWith(t, base, nil, func(*config) {})
	for path, typ := range map[string]string{"/": "text/html", "/dashboard.js": "text/javascript", "/dashboard.css": "text/css"} {
		status, header, body, err := platformtest.SendWith("GET", srv.Admin.URL+path, nil, nil)
		if err != nil || status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), typ) || len(body) == 0 {
			t.Errorf("GET %s: %d %s (%v), want 200 %s", path, status, header.Get("Content-Type"), err, typ)
		}
	}
	for _, path := range []string{"/events", "/ops/streams"} {
		platformtest.Rejected(t, "GET", srv.Admin.URL+path, nil, http.StatusUnauthorized)
		if got := status(t, "GET", srv.Admin.URL+path, "s3cret"); got != http.StatusOK {
			t.Errorf("GET %s with the token: %d", path, got)
		}
	}
}
