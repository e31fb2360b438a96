package eventstore_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// An event written in its type's first shape is read, from the stream, in
// the shape of today's code, through the type's chain of upcasters; one of
// a version newer than the code is not handed on as if it were today's.
func TestOldEventsAreReadInTodaysShape(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	typ := "person_named_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	write := func(entity string) {
		e := eventstore.Event{ID: uuid.NewString(), Type: typ, EntityType: "person", EntityID: "p1",
			Entity: json.RawMessage(entity), Meta: map[string]string{}}
		if _, err := s.Append(ctx, "person", eventstore.Record{Event: e, Expected: eventstore.AnyVersion}); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"name":"Ada Lovelace"}`) // version 1: one name
	// Version 2 splits the name; version 3 adds a title.
	eventstore.RegisterUpcasters(typ,
		func(v1 json.RawMessage) (json.RawMessage, error) {
			var e struct{ Name string }
			if err := json.Unmarshal(v1, &e); err != nil {
				return nil, err
			}
			first, last, _ := strings.Cut(e.Name, " ")
			return json.Marshal(map[string]string{"first": first, "last": last})
		},
		func(v2 json.RawMessage) (json.RawMessage, error) {
			var e map[string]string
			if err := json.Unmarshal(v2, &e); err != nil {
				return nil, err
			}
			e["title"] = ""
			return json.Marshal(e)
		})
	write(`{"first":"Grace","last":"Hopper","title":"Rear Admiral"}`) // today's shape
	rdb := s.Redis()
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.StreamKey("person"), Values: []any{"event_id", uuid.NewString(), "type", typ,
		"entity_type", "person", "entity_id", "p1", "version", "3", "time", "2026-12-05T10:00:00Z",
		"entity", `{"full":"From the future"}`, "schema", "4"}})

	events, _, err := s.Read(ctx, "person", "0", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"first":"Ada","last":"Lovelace","title":""}`, `{"first":"Grace","last":"Hopper","title":"Rear Admiral"}`}
	if len(events) != len(want) {
		t.Fatalf("read %d events, want %d (the one of a newer version left out)", len(events), len(want))
	}
	for i, e := range events {
		if string(e.Entity) != want[i] || e.Schema != 3 {
			t.Errorf("event %d reads %s at version %d, want %s at 3", i, e.Entity, e.Schema, want[i])
		}
	}
	entries, err := rdb.XRange(ctx, s.StreamKey("person"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := entries[0].Values["schema"]; ok || entries[1].Values["schema"] != "3" {
		t.Fatalf("written schema fields %v and %v, want none for version 1 and 3 for today's", entries[0].Values["schema"], entries[1].Values["schema"])
	}
}
