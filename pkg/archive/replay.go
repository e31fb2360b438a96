package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// page is how many events Replay hands on at a time.
const page = 500

// Replay calls fn with the events of a stream after the stream ID from ("0"
// for the start), in order, a page at a time: those archived, then those
// still only in the stream. Each event comes once, none is missed, also
// while the archiver writes and the stream is trimmed below its watermark:
// before it hands on a page of the stream, Replay takes from the archive
// what lies between the last event handed on and the page's first, which
// a trim may have taken out of the stream meanwhile (it trims only what is
// archived).
func Replay(ctx context.Context, db *pgxpool.Pool, store *eventstore.Store, stream, from string,
	fn func([]eventstore.Event) error) error {
	if from == "" {
		from = "0"
	}
	for {
		archived, err := read(ctx, db, stream, from, "", page)
		if err != nil {
			return err
		}
		if len(archived) > 0 {
			if err := fn(archived); err != nil {
				return err
			}
			from = archived[len(archived)-1].StreamID
			continue
		}
		events, next, err := store.Read(ctx, stream, from, page)
		if err != nil || next == from {
			return err
		}
		if len(events) > 0 {
			if gap, err := read(ctx, db, stream, from, events[0].StreamID, page); err != nil || len(gap) > 0 {
				if err == nil {
					err = fn(gap)
				}
				if err != nil {
					return err
				}
				from = gap[len(gap)-1].StreamID
				continue
			}
			if err := fn(events); err != nil {
				return err
			}
		}
		from = next
	}
}

// read returns up to n archived events of a stream after the stream ID
// from and, unless before is "", before the stream ID before.
func read(ctx context.Context, db *pgxpool.Pool, stream, from, before string, n int) ([]eventstore.Event, error) {
	fromMS, fromSeq, err := splitOrZero(from)
	if err != nil {
		return nil, err
	}
	beforeMS, beforeSeq := int64(1<<63-1), int64(1<<63-1)
	if before != "" {
		if beforeMS, beforeSeq, err = split(before); err != nil {
			return nil, err
		}
	}
	rows, err := db.Query(ctx, `
		SELECT ms, seq, event_id, type, entity_type, entity_id, version, time, entity, meta, schema
		FROM events WHERE stream = $1 AND (ms, seq) > ($2, $3) AND (ms, seq) < ($4, $5)
		ORDER BY ms, seq LIMIT $6`, stream, fromMS, fromSeq, beforeMS, beforeSeq, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.Event, error) {
		var (
			e       eventstore.Event
			ms, seq int64
			entity  string
			t       string
		)
		err := row.Scan(&ms, &seq, &e.ID, &e.Type, &e.EntityType, &e.EntityID, &e.Version, &t, &entity, &e.Meta, &e.Schema)
		if err != nil {
			return e, err
		}
		e.StreamID, e.Entity = fmt.Sprintf("%d-%d", ms, seq), []byte(entity)
		if e.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
			return e, err
		}
		return eventstore.Upcast(e)
	})
}

// splitOrZero is split, with "0" as the start of a stream.
func splitOrZero(id string) (ms, seq int64, err error) {
	if id == "0" {
		return 0, 0, nil
	}
	return split(id)
}
