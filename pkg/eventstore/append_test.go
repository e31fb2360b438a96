package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// newStoreAt is newStore with the prefix, which a test needs to snapshot
// every key it owns.
func newStoreAt(t testing.TB) (*eventstore.Store, string) {
	rdb, prefix := redistest.Client(t)
	return eventstore.New(rdb, prefix, eventstore.WithPartitions(redistest.Partitions())), prefix
}

// A write that would fail at run time, inside the script, fails the append
// before anything is written: the stream, the versions and every other key
// stay as they were.
func TestAppendThatWouldFailMidwayWritesNothing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		damage func(ctx context.Context, s *eventstore.Store) error
		write  func(s *eventstore.Store) eventstore.Write
	}{
		{"an HSET on a list", func(ctx context.Context, s *eventstore.Store) error {
			return s.Redis().RPush(ctx, s.Key("customer", "entity:c2"), "x").Err()
		}, func(s *eventstore.Store) eventstore.Write {
			return eventstore.Write{Cmd: "HSET", Key: s.Key("customer", "entity:c2"), Args: []any{"name", "n"}}
		}},
		{"an SADD on a string", func(ctx context.Context, s *eventstore.Store) error {
			return s.Redis().Set(ctx, s.Key("customer", "ids"), "x", 0).Err()
		}, func(s *eventstore.Store) eventstore.Write {
			return eventstore.Write{Cmd: "SADD", Key: s.Key("customer", "ids"), Args: []any{"c2"}}
		}},
		{"the stream key holding a string", func(ctx context.Context, s *eventstore.Store) error {
			return s.Redis().Set(ctx, s.StreamKey("customer"), "x", 0).Err()
		}, nil},
		{"the versions key holding a list", func(ctx context.Context, s *eventstore.Store) error {
			return s.Redis().RPush(ctx, s.Key("customer", "versions"), "x").Err()
		}, nil},
		{"an HSET with a field but no value", nil, func(s *eventstore.Store) eventstore.Write {
			return eventstore.Write{Cmd: "HSET", Key: s.Key("customer", "entity:c2"), Args: []any{"name"}}
		}},
		{"a command the script does not know", nil, func(s *eventstore.Store) eventstore.Write {
			return eventstore.Write{Cmd: "LTRIM", Key: s.Key("customer", "list"), Args: []any{"0", "1"}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, prefix := newStoreAt(t)
			if tc.damage == nil || tc.write != nil {
				// Some history the failed append must leave alone.
				if _, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", "c1", 0), Expected: eventstore.NoEntity}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.damage != nil {
				if err := tc.damage(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			before := redistest.Snapshot(t, s.Redis(), prefix)
			bad := eventstore.Record{Event: event(t, "customer_created", "c2", 0), Expected: eventstore.NoEntity}
			if tc.write != nil {
				bad.Writes = []eventstore.Write{tc.write(s)}
			}
			_, err := s.Append(ctx, "customer",
				eventstore.Record{Event: event(t, "customer_created", "c3", 0), Expected: eventstore.NoEntity,
					Writes: []eventstore.Write{{Cmd: "HSET", Key: s.Key("customer", "entity:c3"), Args: []any{"name", "c3"}}}},
				bad,
			)
			if err == nil {
				t.Fatal("the append succeeded")
			}
			t.Logf("refused: %v", err)
			if after := redistest.Snapshot(t, s.Redis(), prefix); !maps.Equal(before, after) {
				t.Fatalf("the failed append (%v) wrote: keys before %v, after %v", err, slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
			}
		})
	}
}

// Lua's unpack fails on a few thousand values, so a long write must reach the
// script in parts, all written in the same step.
func TestLongWritesCommitWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	key := s.Key("customer", "big")
	var args []any
	for i := range 5000 {
		args = append(args, fmt.Sprint("f", i), fmt.Sprint(i))
	}
	args = append(args, "v", "1")
	if _, err := s.Append(ctx, "customer", eventstore.Record{
		Event: event(t, "customer_created", "c1", 0), Expected: eventstore.AnyVersion,
		Writes: []eventstore.Write{{Cmd: "HSET", Key: key, Args: args}},
	}); err != nil {
		t.Fatal(err)
	}
	got := s.Redis().HGetAll(ctx, key).Val()
	if len(got) != 5001 || got["f0"] != "0" || got["f4999"] != "4999" || got["v"] != "1" {
		t.Fatalf("hash has %d fields, f4999=%q v=%q; want 5001, 4999 and 1", len(got), got["f4999"], got["v"])
	}
}

// Append refuses, before writing anything, events that no reader could
// decode back.
func TestEventsNoReaderCanDecodeAreRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, prefix := newStoreAt(t)
	appendN(t, s, "customer", 1)
	before := redistest.Snapshot(t, s.Redis(), prefix)
	for name, spoil := range map[string]func(*eventstore.Event){
		"no type":              func(e *eventstore.Event) { e.Type = "" },
		"no entity type":       func(e *eventstore.Event) { e.EntityType = "" },
		"no entity id":         func(e *eventstore.Event) { e.EntityID = "" },
		"no event id":          func(e *eventstore.Event) { e.ID = "" },
		"no entity":            func(e *eventstore.Event) { e.Entity = nil },
		"an entity not JSON":   func(e *eventstore.Event) { e.Entity = json.RawMessage("{not json") },
		"an entity array":      func(e *eventstore.Event) { e.Entity = json.RawMessage(`[{"id":"c1"}]`) },
		"an entity string":     func(e *eventstore.Event) { e.Entity = json.RawMessage(`"c1"`) },
		"an entity null":       func(e *eventstore.Event) { e.Entity = json.RawMessage(`null`) },
		"an entity and more":   func(e *eventstore.Event) { e.Entity = json.RawMessage(`{"id":"c1"} {}`) },
		"an entity not closed": func(e *eventstore.Event) { e.Entity = json.RawMessage(`{"id":"c1"`) },
	} {
		e := event(t, "customer_updated", "c1", 1)
		spoil(&e)
		_, err := s.Append(ctx, "customer",
			eventstore.Record{Event: event(t, "customer_updated", "c1", 2), Expected: eventstore.AnyVersion},
			eventstore.Record{Event: e, Expected: eventstore.AnyVersion})
		if !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Errorf("an event with %s: got %v, want ErrInvalidEvent", name, err)
		}
	}
	if after := redistest.Snapshot(t, s.Redis(), prefix); !maps.Equal(before, after) {
		t.Fatal("a refused event wrote something")
	}
}

// An entry that is not an event, XADDed by hand, is skipped: a replay, and so
// a rebuild, goes on with every event after it, in order.
func TestReplaySkipsEntriesThatAreNotEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	want := appendN(t, s, "customer", 300)
	for _, values := range []map[string]any{
		{"hello": "world"},
		{"event_id": "e1", "type": "customer_created", "entity_type": "customer", "entity_id": "c1",
			"version": "1", "time": "2024-01-01T00:00:00Z", "entity": "{not json"},
	} {
		if err := s.Redis().XAdd(ctx, &redis.XAddArgs{Stream: s.StreamKey("customer"), Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// 300 events, 2 that are not, 300 events: the first page of the replay
	// holds fewer events than entries.
	want = append(want, appendN(t, s, "customer", 300)...)

	var got []eventstore.Event
	if err := s.Replay(ctx, "customer", "0", func(es []eventstore.Event) error { got = append(got, es...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("replayed %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].StreamID != want[i].StreamID || got[i].ID != want[i].ID {
			t.Fatalf("event %d: replayed %s, want %s", i, got[i].StreamID, want[i].StreamID)
		}
	}
}

// cjson reads numbers as doubles; args reach the script as strings, so an
// int64 above 2^53 is written exactly.
func TestLargeIntegersAreWrittenExactly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	key := s.Key("customer", "numbers")
	const big int64 = 9007199254740993 // 2^53 + 1
	_, err := s.Append(ctx, "customer", eventstore.Record{
		Event: event(t, "customer_created", "c1", 0), Expected: eventstore.AnyVersion,
		Writes: []eventstore.Write{{Cmd: "HSET", Key: key, Args: []any{"big", big, "max", int64(1<<63 - 1), "small", 0.1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Redis().HGetAll(ctx, key).Val()
	if got["big"] != strconv.FormatInt(big, 10) || got["max"] != "9223372036854775807" || got["small"] != "0.1" {
		t.Fatalf("written %v", got)
	}
}

func TestConflictOnAnIDWithSpacesIsAConflictError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	id := "c 1  with spaces "
	if _, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", id, 0), Expected: eventstore.NoEntity}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", id, 0), Expected: eventstore.NoEntity})
	var conflict *eventstore.ConflictError
	if !errors.As(err, &conflict) || conflict.EntityID != id || conflict.Expected != 0 || conflict.Actual != 1 {
		t.Fatalf("got %v, want a conflict on %q at version 1", err, id)
	}
}

// go-redis sends a script again when its reply was lost; the second run of a
// batch that was appended writes nothing and answers as the first did.
func TestAppendingTheSameEventsAgainWritesThemOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	key := s.Key("customer", "seen")
	recs := []eventstore.Record{
		{Event: event(t, "customer_created", "c1", 0), Expected: eventstore.NoEntity,
			Writes: []eventstore.Write{{Cmd: "RPUSH", Key: key, Args: []any{"c1"}}}},
		{Event: event(t, "customer_updated", "c2", 0), Expected: eventstore.AnyVersion},
	}
	first, err := s.Append(ctx, "customer", recs...)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Append(ctx, "customer", recs...)
	if err != nil {
		t.Fatalf("appending again: %v", err)
	}
	for i := range first {
		if again[i].StreamID != first[i].StreamID || again[i].Version != first[i].Version {
			t.Fatalf("event %d: again %s v%d, first %s v%d", i, again[i].StreamID, again[i].Version, first[i].StreamID, first[i].Version)
		}
	}
	info, _ := s.Info(ctx, "customer")
	if info.Length != 2 || s.Redis().LLen(ctx, key).Val() != 1 {
		t.Fatalf("stream length %d, writes run %d times; want 2 and 1", info.Length, s.Redis().LLen(ctx, key).Val())
	}
}

// An append with a deadline that reaches Redis after it writes nothing,
// also when it was sent in time: here Redis holds it (CLIENT PAUSE WRITE,
// as a stalled server or a slow network would) until past its deadline.
// Sent again once it was written, it answers what it wrote, deadline or not.
func TestAnAppendThatReachesRedisPastItsDeadlineWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.NewServer(t).Client(t)
	s := eventstore.New(rdb, "")
	rec := func(id string) eventstore.Record {
		return eventstore.Record{Event: event(t, "customer_created", id, 0), Expected: eventstore.NoEntity}
	}
	if _, err := s.Append(eventstore.AppendBy(ctx, time.Now().Add(-time.Millisecond)), "customer", rec("c1")); !errors.Is(err, eventstore.ErrTooLate) {
		t.Fatalf("an append past its deadline: %v, want ErrTooLate", err)
	}
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 600, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(eventstore.AppendBy(ctx, time.Now().Add(200*time.Millisecond)), "customer", rec("c2")); !errors.Is(err, eventstore.ErrTooLate) {
		t.Fatalf("an append held by Redis past its deadline: %v, want ErrTooLate", err)
	}
	if n := rdb.Exists(ctx, s.StreamKey("customer"), s.Key("customer", "versions")).Val(); n != 0 {
		t.Fatalf("the late appends wrote %d keys", n)
	}
	keyed := eventstore.WithIdempotencyKey(ctx, "k1")
	first, err := s.Append(eventstore.AppendBy(keyed, time.Now().Add(time.Minute)), "customer", rec("c3"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Append(eventstore.AppendBy(keyed, time.Now().Add(-time.Minute)), "customer", rec("c3"))
	if err != nil || again[0].StreamID != first[0].StreamID {
		t.Fatalf("sent again past its deadline after it was written: %v %v, want %s", again, err, first[0].StreamID)
	}
}
