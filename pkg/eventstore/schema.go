package eventstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// History is kept for good (the archive), so old event shapes outlive the
// code that wrote them. Each event type has a schema version, 1 for its
// first shape; a change of shape registers an upcaster, a pure function
// that takes an entity of one version to the next. Every read (Read,
// Replay, the consumers, dead-letter replays, the archive) brings an event
// to its type's latest version, so handlers see today's shape only.
// An event of version 1 is written without the field.

// Upcaster takes an event's entity from one schema version to the next.
type Upcaster func(entity json.RawMessage) (json.RawMessage, error)

var upcasters sync.Map // event type → []Upcaster

// RegisterUpcasters sets the chain of an event type: chain[0] takes
// version 1 to 2, chain[1] 2 to 3, and so on; the type's latest version is
// len(chain)+1. A catalog of event types registers its chains once, at
// start.
func RegisterUpcasters(eventType string, chain ...Upcaster) {
	upcasters.Store(eventType, chain)
}

func chainOf(eventType string) []Upcaster {
	chain, _ := upcasters.Load(eventType)
	c, _ := chain.([]Upcaster)
	return c
}

// SchemaVersion is the latest schema version of an event type.
func SchemaVersion(eventType string) int { return len(chainOf(eventType)) + 1 }

// Upcast brings e to its type's latest schema version.
func Upcast(e Event) (Event, error) {
	chain := chainOf(e.Type)
	if e.Schema < 1 {
		e.Schema = 1
	}
	if e.Schema > len(chain)+1 {
		return e, fmt.Errorf("event %s: %s of schema version %d, newer than this code's %d", e.StreamID, e.Type, e.Schema, len(chain)+1)
	}
	for ; e.Schema <= len(chain); e.Schema++ {
		entity, err := chain[e.Schema-1](e.Entity)
		if err != nil {
			return e, fmt.Errorf("event %s: upcast %s from schema version %d: %w", e.StreamID, e.Type, e.Schema, err)
		}
		e.Entity = entity
	}
	return e, nil
}

// fieldSchema is the stream field of an event's schema version, written
// when it is above 1.
const fieldSchema = "schema"

// schemaOf reads the schema version field, 1 when absent.
func schemaOf(values map[string]any) (int, error) {
	s, ok := values[fieldSchema].(string)
	if !ok {
		return 1, nil
	}
	return strconv.Atoi(s)
}
