package eventstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DeadLetter is an entry that failed MaxDeliveries times.
type DeadLetter struct {
	Stream     string         `json:"stream"`    // the entity type, e.g. customer
	ID         string         `json:"id"`        // in the dead-letter stream
	StreamID   string         `json:"stream_id"` // in the original stream
	Group      string         `json:"group"`
	Consumer   string         `json:"consumer"`
	Error      string         `json:"error"`
	Deliveries int64          `json:"deliveries"`
	Time       time.Time      `json:"time"`
	Values     map[string]any `json:"entry"` // the original entry as stored, also when it is no event
}

// DeadLetterOriginal is the field of a dead letter that holds the stream ID
// of its original entry.
const DeadLetterOriginal = dlStreamID

// Dead-letter fields; the original entry's fields follow them.
const (
	dlStreamID   = "dl.stream_id"
	dlGroup      = "dl.group"
	dlConsumer   = "dl.consumer"
	dlError      = "dl.error"
	dlDeliveries = "dl.deliveries"
	dlTime       = "dl.time"
)

// DeadLetterKey is the dead-letter stream of a stream and group:
// "events:{order}:dead:billing". It may be trimmed; the stream never is.
func (s *Store) DeadLetterKey(stream, group string) string {
	return s.StreamKey(stream) + ":dead:" + group
}

//go:embed deadletter.lua
var deadLetterLua string

var deadLetterScript = redis.NewScript(deadLetterLua)

// moveToDeadLetters moves an entry to the dead-letter stream and acks it, in
// one step, if the consumer still owns it; it says whether it did.
func (c *Consumer) moveToDeadLetters(ctx context.Context, stream string, m redis.XMessage, cause error, deliveries int64) (bool, error) {
	args := []any{
		c.cfg.Group, c.cfg.Name, m.ID,
		dlStreamID, m.ID, dlGroup, c.cfg.Group, dlConsumer, c.cfg.Name, dlError, cause.Error(),
		dlDeliveries, deliveries, dlTime, time.Now().UTC().Format(time.RFC3339Nano),
	}
	for k, v := range m.Values {
		args = append(args, k, v)
	}
	keys := []string{c.store.StreamKey(stream), c.store.DeadLetterKey(stream, c.cfg.Group)}
	moved, err := deadLetterScript.Run(ctx, c.store.rdb, keys, args...).Int()
	return moved == 1, err
}

// DeadLetters lists up to count dead letters of a stream and group, oldest first.
func (s *Store) DeadLetters(ctx context.Context, stream, group string, count int64) ([]DeadLetter, error) {
	msgs, err := s.rdb.XRangeN(ctx, s.DeadLetterKey(stream, group), "-", "+", count).Result()
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, len(msgs))
	for i, m := range msgs {
		out[i] = deadLetterOf(m)
		out[i].Stream = stream
	}
	return out, nil
}

func deadLetterOf(m redis.XMessage) DeadLetter {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	d := DeadLetter{
		ID: m.ID, StreamID: str(dlStreamID), Group: str(dlGroup), Consumer: str(dlConsumer),
		Error: str(dlError), Values: map[string]any{},
	}
	d.Deliveries, _ = strconv.ParseInt(str(dlDeliveries), 10, 64)
	d.Time, _ = time.Parse(time.RFC3339Nano, str(dlTime))
	for k, v := range m.Values {
		if len(k) < 3 || k[:3] != "dl." {
			d.Values[k] = v
		}
	}
	return d
}

// Replay errors: the dead letter does not exist, or the handler failed again.
var (
	ErrNoDeadLetter = errors.New("no such dead letter")
	ErrReplayFailed = errors.New("replay failed")
)

// Replay hands a dead letter to the consumer's handler again. On success it
// is removed from the dead-letter stream, and so when the handler now skips
// it (ErrSkip): it was dead-lettered before that was known to be final. On
// failure it stays there.
func (c *Consumer) Replay(ctx context.Context, stream, id string) error {
	key := c.store.DeadLetterKey(stream, c.cfg.Group)
	msgs, err := c.store.rdb.XRange(ctx, key, id, id).Result()
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return ErrNoDeadLetter
	}
	d := deadLetterOf(msgs[0])
	e, err := decode(d.StreamID, d.Values)
	if err == nil {
		// Not beside Run's handling of the same entity (of any, with one worker).
		err = c.handleEvent(withStream(ctx, c.store.StreamKey(stream)), c.slotOf(e.EntityID), e)
	}
	if errors.Is(err, ErrSkip) {
		c.counts.skipped.Add(1)
		return c.store.rdb.XDel(ctx, key, id).Err()
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrReplayFailed, id, err)
	}
	c.counts.replayed.Add(1)
	return c.store.rdb.XDel(ctx, key, id).Err()
}
