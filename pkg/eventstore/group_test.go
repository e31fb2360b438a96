package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// Appends that come while MaxRuns are in flight go to Redis together in the next
// run, and each is still written whole or refused whole on its own: in one
// run, a conflict, a write to a key of the wrong type, a repeat of an append
// done before, the same append twice and a caller that gave up refuse or
// answer for themselves, and the others are written.
func TestAppendsThatWaitGoInOneRunEachWholeOrNot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewServer(t) // its own: the test pauses it
	rdb := srv.Client(t)
	sent := &redistest.Sent{}
	rdb.AddHook(sent)
	s := eventstore.New(rdb, "")
	rec := func(id string, expected int64, writes ...eventstore.Write) eventstore.Record {
		return eventstore.Record{Event: event(t, "customer_created", id, 0), Expected: expected, Writes: writes}
	}
	hset := func(key, v string) eventstore.Write {
		return eventstore.Write{Cmd: "HSET", Key: s.Key("customer", key), Args: []any{"v", v}}
	}
	earlier := []eventstore.Record{rec("c0", eventstore.NoEntity)}
	first, err := s.Append(ctx, "customer", earlier...) // also loads the script
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.RPush(ctx, s.Key("customer", "a-list"), "x").Err(); err != nil {
		t.Fatal(err)
	}

	// Redis holds the first run until unpaused; the others wait behind it.
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 20000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(ctx, "CLIENT", "UNPAUSE") })
	counted := sent.Counted(ctx)
	type result struct {
		events []eventstore.Event
		err    error
	}
	results := map[string]chan result{}
	appendAs := func(name string, ctx context.Context, recs ...eventstore.Record) {
		results[name] = make(chan result, 1)
		go func() {
			es, err := s.Append(ctx, "customer", recs...)
			results[name] <- result{es, err}
		}()
	}
	var inFlight []string
	for i := range eventstore.MaxRuns {
		name := fmt.Sprintf("in flight %d", i+1)
		inFlight = append(inFlight, name)
		appendAs(name, counted, rec(fmt.Sprintf("c1-%d", i+1), eventstore.NoEntity, hset(fmt.Sprintf("e:c1-%d", i+1), "1")))
	}
	redistest.Eventually(t, 5*time.Second, "runs in flight", func() bool {
		_, running := eventstore.Waiting(s, "customer")
		return running == eventstore.MaxRuns
	})
	// One at a time, so that they queue up in this order.
	gaveUp, giveUp := context.WithCancel(counted)
	queued := 0
	waitAs := func(name string, ctx context.Context, recs ...eventstore.Record) {
		appendAs(name, ctx, recs...)
		queued++
		redistest.Eventually(t, 5*time.Second, name+" waiting", func() bool { n, _ := eventstore.Waiting(s, "customer"); return n == queued })
	}
	waitAs("good", counted, rec("c2", eventstore.NoEntity, hset("e:c2", "1")), rec("c2", 1, hset("e:c2", "2")))
	// c6 comes first and would be fine: what the refused group checked must
	// not count for the groups after it.
	waitAs("conflict", counted, rec("c6", eventstore.NoEntity, hset("e:c6", "1")), rec("c0", eventstore.NoEntity, hset("e:c0", "1")))
	waitAs("wrong type", counted, rec("c3", eventstore.NoEntity, hset("e:c3", "1")), rec("c7", eventstore.NoEntity, hset("a-list", "1")))
	waitAs("repeat", counted, earlier...)
	twin := []eventstore.Record{rec("c8", eventstore.AnyVersion, hset("e:c8", "1"))}
	waitAs("twin 1", counted, slices.Clone(twin)...)
	waitAs("twin 2", counted, slices.Clone(twin)...)
	waitAs("gave up", gaveUp, rec("c4", eventstore.NoEntity, hset("e:c4", "1")))
	waitAs("after the others", counted, rec("c5", eventstore.NoEntity, hset("e:c5", "1")), rec("c6", eventstore.NoEntity, hset("e:c6", "1")),
		rec("c3", eventstore.NoEntity, hset("e:c3", "1")))
	giveUp()
	sent.Reset() // the run in flight was counted when it was sent
	if err := rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}

	get := func(name string) result {
		select {
		case r := <-results[name]:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer", name)
			return result{}
		}
	}
	for _, name := range append(inFlight, "good", "after the others") {
		if r := get(name); r.err != nil {
			t.Errorf("%s: %v", name, r.err)
		}
	}
	var conflict *eventstore.ConflictError
	if r := get("conflict"); !errors.As(r.err, &conflict) || conflict.EntityID != "c0" || conflict.Actual != 1 {
		t.Errorf("conflict: %v, want a conflict on c0 at version 1", r.err)
	}
	if r := get("wrong type"); r.err == nil || errors.Is(r.err, eventstore.ErrConflict) {
		t.Errorf("wrong type: %v, want a refusal", r.err)
	}
	if r := get("repeat"); r.err != nil || len(r.events) != 1 || r.events[0].StreamID != first[0].StreamID {
		t.Errorf("repeat: %v %v, want what the first append answered, %s", r.events, r.err, first[0].StreamID)
	}
	// The same append twice in one run: written once, both told so.
	if t1, t2 := get("twin 1"), get("twin 2"); t1.err != nil || t2.err != nil || len(t1.events) != 1 || len(t2.events) != 1 ||
		t1.events[0].StreamID != t2.events[0].StreamID {
		t.Errorf("twins: %v %v and %v %v, want one event, the same for both", t1.events, t1.err, t2.events, t2.err)
	}
	if r := get("gave up"); !errors.Is(r.err, context.Canceled) {
		t.Errorf("gave up: %v, want context.Canceled", r.err)
	}
	if n := sent.Commands.Load(); n != 1 {
		t.Errorf("the waiting appends took %d runs, want 1", n)
	}

	// What the stream and the keys hold: the accepted appends only, in the
	// order they queued up in.
	var got []string
	for _, m := range rdb.XRange(ctx, s.StreamKey("customer"), "-", "+").Val() {
		got = append(got, m.Values["entity_id"].(string)+"@"+m.Values["version"].(string))
	}
	slices.Sort(got[1 : 1+len(inFlight)]) // in flight at once: theirs to race for
	want := []string{"c0@1"}
	for i := range inFlight {
		want = append(want, fmt.Sprintf("c1-%d@1", i+1))
	}
	if want = append(want, "c2@1", "c2@2", "c8@1", "c5@1", "c6@1", "c3@1"); !slices.Equal(got, want) {
		t.Fatalf("stream holds %v, want %v", got, want)
	}
	for key, v := range map[string]string{"e:c1-1": "1", "e:c2": "2", "e:c5": "1", "e:c6": "1", "e:c3": "1", "e:c8": "1", "e:c0": "", "e:c4": ""} {
		if got := rdb.HGet(ctx, s.Key("customer", key), "v").Val(); got != v {
			t.Errorf("%s holds v=%q, want %q", key, got, v)
		}
	}
	if typ := rdb.Type(ctx, s.Key("customer", "a-list")).Val(); typ != "list" || rdb.LLen(ctx, s.Key("customer", "a-list")).Val() != 1 {
		t.Errorf("a-list was written: %s", typ)
	}
}

// A run that fails as a whole, here as the versions hash is a list, fails
// every append in it and in the runs after it alike, and leaves the queue
// working once Redis is mended.
func TestARunThatFailsFailsItsAppendsAndTheQueueGoesOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewServer(t)
	rdb := srv.Client(t)
	s := eventstore.New(rdb, "")
	versions := s.Key("customer", "versions")
	if err := rdb.RPush(ctx, versions, "x").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 20000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(ctx, "CLIENT", "UNPAUSE") })
	errs := make(chan error, eventstore.MaxRuns+3)
	appendOne := func(id string) {
		go func() {
			_, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", id, 0), Expected: eventstore.NoEntity})
			errs <- err
		}()
	}
	for i := range eventstore.MaxRuns + 3 {
		appendOne(fmt.Sprint("c", i))
	}
	redistest.Eventually(t, 5*time.Second, "three appends waiting", func() bool { n, _ := eventstore.Waiting(s, "customer"); return n == 3 })
	if err := rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	for range eventstore.MaxRuns + 3 {
		select {
		case err := <-errs:
			if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
				t.Errorf("append: %v, want Redis's WRONGTYPE", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an append got no answer")
		}
	}
	if n, running := eventstore.Waiting(s, "customer"); n != 0 || running != 0 {
		t.Fatalf("after the runs: %d waiting, %d running; want none", n, running)
	}
	rdb.Del(ctx, versions)
	if _, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", "c9", 0), Expected: eventstore.NoEntity}); err != nil {
		t.Fatalf("an append once Redis is mended: %v", err)
	}
}

// An append whose caller gives up is given up: its run ends with the
// caller's deadline, and is not written once Redis can take it. Here the
// client's one connection is held by a blocking read, as a dead Redis would
// hold a dial.
func TestAnAppendWhoseCallerGaveUpIsNotWrittenLater(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
	t.Cleanup(func() { rdb.Close() })
	other := srv.Client(t)
	s := eventstore.New(rdb, "")
	rec := func(id string) eventstore.Record {
		return eventstore.Record{Event: event(t, "customer_created", id, 0), Expected: eventstore.NoEntity}
	}
	if _, err := s.Append(ctx, "customer", rec("c0")); err != nil { // also loads the script
		t.Fatal(err)
	}
	held := make(chan struct{})
	go func() { rdb.BLPop(ctx, 0, "release"); close(held) }()
	redistest.Eventually(t, 5*time.Second, "the connection held", func() bool {
		return strings.Contains(other.ClientList(ctx).Val(), "cmd=blpop")
	})
	gaveUp, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := s.Append(gaveUp, "customer", rec("c1")); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the append succeeded on a held connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the append went on after its caller gave up")
	}
	other.LPush(ctx, "release", "x")
	<-held
	if _, err := s.Append(ctx, "customer", rec("c2")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range other.XRange(ctx, s.StreamKey("customer"), "-", "+").Val() {
		got = append(got, m.Values["entity_id"].(string))
	}
	if !slices.Equal(got, []string{"c0", "c2"}) {
		t.Fatalf("stream holds %v, want c0 and c2: the append given up was written", got)
	}
}
