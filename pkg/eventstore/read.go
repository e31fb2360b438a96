package eventstore

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Read returns the events among up to count entries after the stream ID from
// ("0" or "" for the start) and the ID to read the next page from. Entries
// that are not events are skipped. It reads with XREAD, which from an ID
// gives what XRANGE gives from just after it: the Redis users of the
// services that read a stream (the gateway's dashboard, msg) may XREAD it,
// not XRANGE.
func (s *Store) Read(ctx context.Context, stream, from string, count int64) ([]Event, string, error) {
	start := from
	if start == "" {
		start = "0"
	}
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s.StreamKey(stream), start}, Count: count, Block: -1}).Result()
	if errors.Is(err, redis.Nil) || err == nil && len(res) == 0 {
		return nil, from, nil
	}
	if err != nil {
		return nil, from, err
	}
	msgs := res[0].Messages
	if len(msgs) > 0 {
		from = msgs[len(msgs)-1].ID
	}
	return DecodeEntries(stream, msgs), from, nil
}

// IDBefore says whether the stream ID a comes before b; "0" is the start,
// before every entry.
func IDBefore(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am < bm || am == bm && as < bs
}

// splitID is a stream ID's two numbers, "ms-seq"; 0 where one is missing.
func splitID(id string) (ms, seq uint64) {
	m, sq, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(sq, 10, 64)
	return ms, seq
}

// Archive holds the events of the streams that a trim may have taken out
// of Redis (pkg/archive's Reader, in PostgreSQL).
type Archive interface {
	// Archived returns, in order, up to n archived events of a stream (a
	// partition) after the stream ID from ("0" for the start) and, unless
	// before is "", before the stream ID before.
	Archived(ctx context.Context, stream, from, before string, n int) ([]Event, error)
}

// UseArchive has Replay, and consumer groups that are behind the start of a
// stream, read the archive below what the stream still holds. Call it
// before the store is used.
func (s *Store) UseArchive(a Archive) { s.archive = a }

// archived is the archive's Archived, nothing without an archive.
func (s *Store) archived(ctx context.Context, stream, from, before string, n int) ([]Event, error) {
	if s.archive == nil {
		return nil, nil
	}
	return s.archive.Archived(ctx, stream, from, before, n)
}

// replayPage is how many events Replay hands on at a time.
const replayPage = 500

// Replay calls fn with the events of a stream after from ("0" or "" for the
// start), in order, a page at a time, until there are no more. With an
// archive (UseArchive) it hands on those archived first, then those still
// only in the stream, each once, none missed, also while the archiver
// writes and the stream is trimmed below what was archived: before it hands
// on a page of the stream, it takes from the archive what lies between the
// last event handed on and the page's first, which a trim may have taken
// out of the stream meanwhile (a trim removes only what is archived).
func (s *Store) Replay(ctx context.Context, stream, from string, fn func([]Event) error) error {
	if from == "" {
		from = "0"
	}
	hand := func(events []Event) error {
		if err := fn(events); err != nil {
			return err
		}
		countReplayed(ctx, len(events))
		from = events[len(events)-1].StreamID
		return nil
	}
	for {
		archived, err := s.archived(ctx, stream, from, "", replayPage)
		if err != nil {
			return err
		}
		if len(archived) > 0 {
			if err := hand(archived); err != nil {
				return err
			}
			continue
		}
		events, next, err := s.Read(ctx, stream, from, replayPage)
		if err != nil || next == from {
			return err
		}
		before := next // the archive holds only events: none lies among the page's other entries
		if len(events) > 0 {
			before = events[0].StreamID
		}
		gap, err := s.archived(ctx, stream, from, before, replayPage)
		if err == nil && len(gap) > 0 {
			events, next = gap, gap[len(gap)-1].StreamID
		}
		if err == nil && len(events) > 0 {
			err = hand(events)
		}
		if err != nil {
			return err
		}
		from = next
	}
}

// ReplayAll is Replay from the start of every partition of an entity type's
// stream, one after the other: each entity's events in order, those of
// entities in different partitions in no order between them.
func (s *Store) ReplayAll(ctx context.Context, typ string, fn func([]Event) error) error {
	for _, part := range s.Partitions(typ) {
		if err := s.Replay(ctx, part, "0", fn); err != nil {
			return err
		}
	}
	return nil
}

// DecodeEntries decodes the events among the entries msgs of a stream (an
// XRANGE's or XREADGROUP's). An entry that is not one, say an
// XADD by hand, is logged and skipped: stopping at it would stop every
// replay, and so every rebuild, there for good.
func DecodeEntries(stream string, msgs []redis.XMessage) []Event {
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := decode(m.ID, m.Values)
		if err != nil {
			slog.Warn("eventstore: skipped an entry that is not an event", "stream", stream, "id", m.ID, "err", err)
			continue
		}
		out = append(out, e)
	}
	return out
}
