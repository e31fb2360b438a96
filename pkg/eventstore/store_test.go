package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func newStore(t testing.TB) *eventstore.Store {
	rdb, prefix := redistest.Client(t)
	return eventstore.New(rdb, prefix, eventstore.WithPartitions(redistest.Partitions()))
}

func event(t testing.TB, typ, id string, n int) eventstore.Event {
	t.Helper()
	e, err := eventstore.NewEvent(typ, "customer", id, map[string]any{"id": id, "n": n})
	if err != nil {
		t.Fatal(err)
	}
	e.Meta["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	return e
}

func appendN(t testing.TB, s *eventstore.Store, stream string, n int) []eventstore.Event {
	t.Helper()
	recs := make([]eventstore.Record, n)
	for i := range recs {
		recs[i] = eventstore.Record{Event: event(t, "customer_created", fmt.Sprintf("c%d", i), i), Expected: eventstore.AnyVersion}
	}
	out, err := s.Append(context.Background(), stream, recs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendKeepsOrderAndEnvelope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	var want []eventstore.Event
	for i := range 50 {
		out, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_updated", "c1", i), Expected: eventstore.AnyVersion})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, out...)
	}
	want = append(want, appendN(t, s, "customer", 50)...)

	var got []eventstore.Event
	if err := s.Replay(ctx, "customer", "0", func(es []eventstore.Event) error { got = append(got, es...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d events, appended %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.StreamID != w.StreamID || g.ID != w.ID || g.Type != w.Type || g.EntityID != w.EntityID ||
			g.Version != w.Version || !g.Time.Equal(w.Time) || string(g.Entity) != string(w.Entity) ||
			g.Meta["traceparent"] != w.Meta["traceparent"] {
			t.Fatalf("event %d: read %+v, appended %+v", i, g, w)
		}
		if i < 50 && g.Version != int64(i+1) {
			t.Fatalf("event %d of c1 has version %d", i, g.Version)
		}
	}
	page, next, err := s.Read(ctx, "customer", got[9].StreamID, 5)
	if err != nil || len(page) != 5 || page[0].StreamID != got[10].StreamID || next != got[14].StreamID {
		t.Fatalf("page after the 10th: %d events, next %s, err %v", len(page), next, err)
	}
}

func TestStaleExpectedVersionConflictsAndWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", "c1", 0), Expected: eventstore.NoEntity}); err != nil {
		t.Fatal(err)
	}
	// A batch whose second record is stale appends neither.
	_, err := s.Append(ctx, "customer",
		eventstore.Record{Event: event(t, "customer_created", "c2", 0), Expected: eventstore.NoEntity},
		eventstore.Record{Event: event(t, "customer_updated", "c1", 1), Expected: 0},
	)
	var conflict *eventstore.ConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, eventstore.ErrConflict) || conflict.EntityID != "c1" || conflict.Actual != 1 || conflict.Expected != 0 {
		t.Fatalf("stale append: got %v, want a conflict on c1 at version 1", err)
	}
	info, err := s.Info(ctx, "customer")
	if err != nil || info.Length != 1 {
		t.Fatalf("stream length %d after a failed batch (err %v), want 1", info.Length, err)
	}
	if v, _ := s.Version(ctx, "customer", "c2"); v != 0 {
		t.Fatalf("c2 has version %d after a failed batch", v)
	}
}

func TestConcurrentAppendsWithExpectedVersionLoseNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	const writers = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v, err := s.Version(ctx, "customer", "c1")
				if err != nil {
					t.Error(err)
					return
				}
				_, err = s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_updated", "c1", w), Expected: v})
				if errors.Is(err, eventstore.ErrConflict) {
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Error(err)
				}
				return
			}
		}()
	}
	wg.Wait()
	v, _ := s.Version(ctx, "customer", "c1")
	info, _ := s.Info(ctx, "customer")
	if v != writers || info.Length != writers {
		t.Fatalf("version %d, stream length %d, want %d each", v, info.Length, writers)
	}
	t.Logf("%d conflicts retried", conflicts)
}

func TestWritesRunInTheSameStepWithTheVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	key := s.Key("customer", "seen")
	for i := range 3 {
		_, err := s.Append(ctx, "customer", eventstore.Record{
			Event: event(t, "customer_updated", "c1", i), Expected: int64(i),
			Writes: []eventstore.Write{{Cmd: "HSET", Key: key, Args: []any{"c1", fmt.Sprint(i + 1)}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A conflicting append must not run its writes.
	_, err := s.Append(ctx, "customer", eventstore.Record{
		Event: event(t, "customer_updated", "c1", 9), Expected: 1,
		Writes: []eventstore.Write{{Cmd: "HSET", Key: key, Args: []any{"c1", "stale"}}},
	})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want conflict, got %v", err)
	}
	if got := s.Redis().HGet(ctx, key, "c1").Val(); got != "3" {
		t.Fatalf("write saw version %q, want 3", got)
	}
}

func TestVersionsAreRebuiltFromTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	appendN(t, s, "customer", 3) // c0, c1, c2 at version 1
	for i := range 4 {
		if _, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_updated", "c1", i), Expected: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Redis().Del(ctx, s.Key("customer", "versions"))
	if err := s.RebuildVersions(ctx, "customer"); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int64{"c0": 1, "c1": 5, "c2": 1} {
		if v, _ := s.Version(ctx, "customer", id); v != want {
			t.Fatalf("%s at version %d after the rebuild, want %d", id, v, want)
		}
	}
	// Expected versions work on from there.
	_, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_updated", "c1", 9), Expected: 4})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("a stale version after the rebuild: %v", err)
	}
}
