package eventstore

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// written is the stream entry the append script makes of e at its version:
// the fields it names, with the values of the arguments Append sends it.
func written(e Event) map[string]any {
	a := appendArgs{argv: []any{1}} // one group, as run starts it
	a.group([]Record{{Event: e}}, time.Minute, 0)
	ev := a.argv[4:] // after the number of groups, the group's length, its marker's time to live and its deadline
	f := map[string]any{
		fieldEntityID: text(ev[0]), fieldID: text(ev[2]), fieldType: text(ev[3]), fieldEntityType: text(ev[4]),
		fieldVersion: strconv.FormatInt(e.Version, 10), fieldTime: text(ev[5]), fieldEntity: text(ev[6]),
	}
	meta := ev[8 : 8+ev[7].(int)]
	for i := 0; i < len(meta); i += 2 {
		f[text(meta[i])] = text(meta[i+1])
	}
	return f
}

// An entry that decode accepts has what every event has; appended again, as
// the append script writes it, it decodes to the same event. Nothing panics: entries come
// from Redis, where anyone with access may have written anything.
func FuzzDecodeEntry(f *testing.F) {
	f.Fuzz(func(t *testing.T, streamID, id, typ, entityType, entityID, version, when, entity, metaKey, metaValue string) {
		values := map[string]any{
			fieldID: id, fieldType: typ, fieldEntityType: entityType, fieldEntityID: entityID,
			fieldVersion: version, fieldTime: when, fieldEntity: entity, metaPrefix + metaKey: metaValue,
		}
		e, err := decode(streamID, values)
		if err != nil {
			return
		}
		if e.ID == "" || e.Type == "" || e.EntityID == "" {
			t.Fatalf("accepted %+v from %v", e, values)
		}
		if y := e.Time.UTC().Year(); y < 0 || y > 9999 {
			// Known: written back in UTC, such a time leaves RFC 3339's
			// four-digit years, and the entry no longer decodes. Only a
			// hand-made entry has one; events carry the time of their append.
			return
		}
		again := written(e)
		back, err := decode(streamID, again)
		if err != nil || !back.Time.Equal(e.Time) || !bytes.Equal(back.Entity, e.Entity) || back.Meta[metaKey] != e.Meta[metaKey] ||
			back.ID != e.ID || back.Type != e.Type || back.EntityType != e.EntityType || back.EntityID != e.EntityID || back.Version != e.Version {
			t.Fatalf("%+v written back decodes to %+v (%v)", e, back, err)
		}
	})
}

// An entity that Event.Decode accepts is a JSON object. Nothing panics.
func FuzzEventDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, entity []byte) {
		var order struct {
			CustomerID string   `json:"customer_id"`
			ID         string   `json:"id"`
			ProductIDs []string `json:"product_ids"`
			Amount     int64    `json:"amount"`
		}
		if (Event{Entity: entity}).Decode(&order) == nil && (!json.Valid(entity) || !bytes.HasPrefix(bytes.TrimSpace(entity), []byte("{"))) {
			t.Fatalf("entity %q accepted", entity)
		}
		var m map[string]any
		if (Event{Entity: entity}).Decode(&m) == nil && m == nil {
			t.Fatalf("entity %q accepted as no object", entity)
		}
	})
}
