package eventstore

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// A command sent again with the same idempotency key must not be done
// twice, also when the answer to the first try was lost: its caller gave up
// while the append was in flight, and the append landed later. Appends made
// on a context WithIdempotencyKey give each event an ID derived from the
// key, its entity and its type, not a random one, so the command's second
// try appends the same events as its first, and the first event's marker
// (see appendScript) answers it what the first try did, without writing.
// Such a marker is kept as long as the key's promise (KeepKeyed), the
// others a minute: far longer than go-redis goes on retrying.
const (
	KeepKeyed   = 24 * time.Hour
	keepUnkeyed = time.Minute
)

type idempotencyKey struct{}

// WithIdempotencyKey is ctx for a command that its client may send again
// with key. The key should name the command's scope too (its method and
// path): two commands under one key are one.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKey{}, key)
}

// IdempotencyKey is the key of the command ctx is for, "" if none.
func IdempotencyKey(ctx context.Context) string {
	key, _ := ctx.Value(idempotencyKey{}).(string)
	return key
}

// KeyedID is a UUID derived from the idempotency key of ctx and names, the
// same on every try of a command; without a key, a random one.
func KeyedID(ctx context.Context, names ...string) string {
	key := IdempotencyKey(ctx)
	if key == "" {
		return uuid.NewString()
	}
	name := key
	for _, n := range names {
		name += "\x00" + n
	}
	return uuid.NewSHA1(keyedSpace, []byte(name)).String()
}

// keyedEventID is the ID that an append on ctx gives an event of type typ
// of an entity, when ctx has an idempotency key.
func keyedEventID(ctx context.Context, entityType, entityID, typ string) string {
	return KeyedID(ctx, "event", entityType, entityID, typ)
}

// Appended says whether the command of ctx, sent before with its
// idempotency key, appended an event of type typ of an entity to stream
// within KeepKeyed: a try that finds the entity changed or gone already
// answers as the first try did. Without a key it is false. With
// WithReplicas, a first try that enough replicas do not confirm now is
// ErrNotReplicated.
func (s *Store) Appended(ctx context.Context, stream, entityType, entityID, typ string) (bool, error) {
	if IdempotencyKey(ctx) == "" {
		return false, nil
	}
	return s.marked(ctx, s.marker(stream, keyedEventID(ctx, entityType, entityID, typ)))
}

// marker is the key of the marker of an append whose first event has ID id.
func (s *Store) marker(stream, id string) string { return s.Key(stream, "appended:"+id) }

// keyedSpace is the UUID namespace of KeyedID.
var keyedSpace = uuid.MustParse("5b1f3e0e-0c55-4d8e-9a52-7a1f0e1c3d21")

// markerTTL is how long the marker of an append made on ctx is kept.
func markerTTL(ctx context.Context) time.Duration {
	if IdempotencyKey(ctx) != "" {
		return KeepKeyed
	}
	return keepUnkeyed
}

type appendBy struct{}

// AppendBy is ctx for a command whose appends must land by t: an append
// that reaches Redis later, by Redis's own clock, writes nothing and
// answers ErrTooLate. A timeout of the caller cannot promise that, as a
// command sent in time may still run in Redis later (a stalled server, a
// slow network); a command whose result another service stops waiting for
// at a time it knows (a stock reservation that a sweeper releases) can.
func AppendBy(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, appendBy{}, t.UnixMilli())
}

// deadline is the time of AppendBy of ctx in Unix milliseconds, 0 if none.
func deadline(ctx context.Context) int64 {
	by, _ := ctx.Value(appendBy{}).(int64)
	return by
}
