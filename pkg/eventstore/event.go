package eventstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Event is the envelope of one domain event.
type Event struct {
	StreamID   string            // assigned by Redis on append
	ID         string            // UUID, unique per event
	Type       string            // e.g. customer_created
	EntityType string            // e.g. customer
	EntityID   string            // the entity the event is about
	Version    int64             // entity version after this event, assigned on append
	Time       time.Time         // when the command was accepted
	Entity     json.RawMessage   // the entity's JSON after the event
	Meta       map[string]string // free metadata, e.g. the W3C traceparent
	Schema     int               // the version of Entity's shape (schema.go); 0 on append means the type's latest
}

// ErrInvalidEvent is matched by the error of an event that no reader could
// decode, which Append refuses.
var ErrInvalidEvent = errors.New("invalid event")

// Stream field names. Metadata keys are stored as "meta.<key>".
const (
	fieldID         = "event_id"
	fieldType       = "type"
	fieldEntityType = "entity_type"
	fieldEntityID   = "entity_id"
	fieldVersion    = "version"
	fieldTime       = "time"
	fieldEntity     = "entity"
	metaPrefix      = "meta."
)

// NewEvent returns an event with a fresh ID and the current time.
func NewEvent(typ, entityType, entityID string, entity any) (Event, error) {
	raw, err := json.Marshal(entity)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s entity: %w", entityType, err)
	}
	return Event{
		ID: uuid.NewString(), Type: typ, EntityType: entityType, EntityID: entityID,
		Time: time.Now().UTC(), Entity: raw, Meta: map[string]string{},
	}, nil
}

// Decode reads the event's entity into v, which it must be a JSON object for.
func (e Event) Decode(v any) error {
	if !isObject(e.Entity) {
		return fmt.Errorf("event %s: entity is not a JSON object: %.40q", e.StreamID, e.Entity)
	}
	if err := json.Unmarshal(e.Entity, v); err != nil {
		return fmt.Errorf("event %s: entity is not a JSON object of its type: %w", e.StreamID, err)
	}
	return nil
}

// check says why no reader could decode the event, if none could: Append
// refuses what decode would not take back.
func (e Event) check() error {
	var why string
	switch {
	case e.ID == "":
		why = "no event id"
	case e.Type == "":
		why = "no type"
	case e.EntityType == "":
		why = "no entity type"
	case e.EntityID == "":
		why = "no entity id"
	case !isObject(e.Entity):
		why = fmt.Sprintf("entity is not a JSON object: %.40q", e.Entity)
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidEvent, why)
}

// isObject says whether raw is one JSON object, as every entity is.
func isObject(raw []byte) bool {
	return json.Valid(raw) && bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{"))
}

// decode reads an envelope back from a stream entry.
func decode(streamID string, values map[string]any) (Event, error) {
	str := func(k string) string { s, _ := values[k].(string); return s }
	e := Event{
		StreamID: streamID, ID: str(fieldID), Type: str(fieldType),
		EntityType: str(fieldEntityType), EntityID: str(fieldEntityID),
		Entity: json.RawMessage(str(fieldEntity)), Meta: map[string]string{},
	}
	if err := e.check(); err != nil {
		return e, fmt.Errorf("entry %s is not an event: %w", streamID, err)
	}
	var err error
	if e.Version, err = strconv.ParseInt(str(fieldVersion), 10, 64); err != nil {
		return e, fmt.Errorf("entry %s: bad version: %w", streamID, err)
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, str(fieldTime)); err != nil {
		return e, fmt.Errorf("entry %s: bad time: %w", streamID, err)
	}
	for k, v := range values {
		if name, ok := strings.CutPrefix(k, metaPrefix); ok {
			e.Meta[name], _ = v.(string)
		}
	}
	if e.Schema, err = schemaOf(values); err != nil {
		return e, fmt.Errorf("entry %s: bad schema version: %w", streamID, err)
	}
	return Upcast(e)
}
