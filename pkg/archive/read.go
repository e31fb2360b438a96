package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Reader reads the archive for the event store: given to
// eventstore.Store.UseArchive, it has the store's Replay, and its consumer
// groups behind a stream's start, read what was trimmed from PostgreSQL.
type Reader struct {
	DB *pgxpool.Pool
}

// Archived returns, in order, up to n archived events of a stream after the
// stream ID from ("0" for the start) and, unless before is "", before the
// stream ID before.
func (r Reader) Archived(ctx context.Context, stream, from, before string, n int) ([]eventstore.Event, error) {
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
	rows, err := r.DB.Query(ctx, `
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
