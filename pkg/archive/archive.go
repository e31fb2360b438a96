// Package archive keeps every event of the event store in PostgreSQL, so
// that Redis need not hold all history: an Archiver copies each stream's
// events to the table events through the consumer group "archive", and
// Reader reads them back for the event store (eventstore.Store.UseArchive),
// whose Replay then reads a stream's history from the archive and then from
// the stream, with no gap and no repeat, also while the stream is trimmed
// below what was archived.
//
// A row is keyed by its stream (the partition's name, e.g. "order" or
// "order:3") and its stream ID, split into its two numbers so that rows
// order as the stream does. The archiver inserts a batch in one statement
// that skips rows already there, and acks the batch only after its commit:
// a crash between the two sends the batch again, which changes nothing.
// The highest ID archived of a stream is its watermark (Watermark); below
// it the stream may be trimmed.
package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// Group is the consumer group the archiver reads each stream through.
const Group = "archive"

const schema = `
CREATE TABLE IF NOT EXISTS events (
	stream      text        NOT NULL,
	ms          bigint      NOT NULL,
	seq         bigint      NOT NULL,
	event_id    text        NOT NULL,
	type        text        NOT NULL,
	entity_type text        NOT NULL,
	entity_id   text        NOT NULL,
	version     bigint      NOT NULL,
	time        text        NOT NULL, -- RFC 3339 with nanoseconds, as in the stream
	entity      text        NOT NULL,
	meta        jsonb       NOT NULL,
	schema      int         NOT NULL, -- the entity's schema version as written (eventstore.Upcast)
	PRIMARY KEY (stream, ms, seq)
)`

// Migrate makes the archive's table if it is not there yet.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	_, err := db.Exec(ctx, schema)
	return err
}

// Archiver copies the events of streams to PostgreSQL.
type Archiver struct {
	DB      *pgxpool.Pool
	Store   *eventstore.Store
	Streams []string      // partitions, e.g. store.Partitions("order")...
	Name    string        // its consumer's name in the group (default "archiver")
	Batch   int64         // entries a read and an insert (default 500)
	Block   time.Duration // how long a read waits for new entries (default 1s)
	Logger  *slog.Logger

	rows, bytes atomic.Int64
}

// Rows and Bytes are how many events, and how many bytes of their entities,
// this archiver inserted (rows already there not counted).
func (a *Archiver) Rows() int64  { return a.rows.Load() }
func (a *Archiver) Bytes() int64 { return a.bytes.Load() }

// Run archives until ctx ends, each stream on its own. Errors (Redis or
// PostgreSQL away) are logged and the stream is read again, from its own
// pending entries, after a capped backoff.
func (a *Archiver) Run(ctx context.Context) error {
	if a.Name == "" {
		a.Name = "archiver"
	}
	if a.Batch <= 0 {
		a.Batch = 500
	}
	if a.Block <= 0 {
		a.Block = time.Second
	}
	if a.Logger == nil {
		a.Logger = slog.Default()
	}
	if err := Migrate(ctx, a.DB); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, stream := range a.Streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait := 50 * time.Millisecond
			for ctx.Err() == nil {
				err := a.follow(ctx, stream)
				if ctx.Err() != nil {
					break
				}
				a.Logger.Warn("archive: stream interrupted", "stream", stream, "err", err, "retry_in", wait)
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
				wait = min(wait*2, 5*time.Second)
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// follow archives a stream: first the entries this consumer was handed and
// did not ack (a crash's batch), then new ones, and its own pending entries
// again every ten Blocks: a read whose reply was lost (Redis restarted and
// the client retried it) leaves a batch delivered and never seen.
func (a *Archiver) follow(ctx context.Context, stream string) error {
	rdb, key := a.Store.Redis(), a.Store.StreamKey(stream)
	err := rdb.XGroupCreateMkStream(ctx, key, Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	from := "0" // own pending entries after from; ">" once there are none
	pendingPass := time.Now()
	for {
		if from == ">" && time.Since(pendingPass) >= 10*a.Block {
			from = "0"
		}
		args := &redis.XReadGroupArgs{Group: Group, Consumer: a.Name, Streams: []string{key, from}, Count: a.Batch}
		if from == ">" {
			args.Block = a.Block
		}
		res, err := a.Store.ReadGroup(ctx, args)
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return err
		}
		msgs := res[0].Messages
		if len(msgs) == 0 {
			from, pendingPass = ">", time.Now()
			continue
		}
		if err := a.insert(ctx, stream, eventstore.DecodeEntries(stream, msgs)); err != nil {
			return err
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if err := rdb.XAck(ctx, key, Group, ids...).Err(); err != nil {
			return err
		}
		if from != ">" {
			from = ids[len(ids)-1]
		}
	}
}

// insert writes events in one statement, skipping those already archived.
func (a *Archiver) insert(ctx context.Context, stream string, events []eventstore.Event) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	var (
		ms, seq, versions                  = make([]int64, n), make([]int64, n), make([]int64, n)
		schemas                            = make([]int32, n)
		ids, types, entityTypes, entityIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		entities, metas, times             = make([]string, n), make([]string, n), make([]string, n)
	)
	for i, e := range events {
		var err error
		if ms[i], seq[i], err = split(e.StreamID); err != nil {
			return err
		}
		meta, _ := json.Marshal(e.Meta)
		schemas[i] = int32(e.Schema)
		ids[i], types[i], entityTypes[i], entityIDs[i] = e.ID, e.Type, e.EntityType, e.EntityID
		versions[i], times[i], entities[i], metas[i] = e.Version, e.Time.Format(time.RFC3339Nano), string(e.Entity), string(meta)
	}
	var rows, bytes int64
	err := a.DB.QueryRow(ctx, `
		WITH added AS (
			INSERT INTO events (stream, ms, seq, event_id, type, entity_type, entity_id, version, time, entity, meta, schema)
			SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::bigint[], $9::text[], $10::text[], $11::jsonb[], $12::int[])
			ON CONFLICT DO NOTHING
			RETURNING octet_length(entity))
		SELECT count(*), coalesce(sum(octet_length), 0) FROM added`,
		stream, ms, seq, ids, types, entityTypes, entityIDs, versions, times, entities, metas, schemas).Scan(&rows, &bytes)
	if err != nil {
		return fmt.Errorf("archive %d events of %s: %w", n, stream, err)
	}
	a.rows.Add(rows)
	a.bytes.Add(bytes)
	return nil
}

// split parses a stream ID "ms-seq".
func split(id string) (ms, seq int64, err error) {
	a, b, ok := strings.Cut(id, "-")
	if ms, err = strconv.ParseInt(a, 10, 64); err == nil && ok {
		seq, err = strconv.ParseInt(b, 10, 64)
	}
	if err != nil || !ok {
		return 0, 0, fmt.Errorf("archive: bad stream ID %q", id)
	}
	return ms, seq, nil
}

// Watermark is the highest stream ID archived of a stream, "0" if none.
func Watermark(ctx context.Context, db *pgxpool.Pool, stream string) (string, error) {
	var ms, seq int64
	err := db.QueryRow(ctx, `SELECT ms, seq FROM events WHERE stream = $1 ORDER BY ms DESC, seq DESC LIMIT 1`,
		stream).Scan(&ms, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return "0", nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d-%d", ms, seq), nil
}
