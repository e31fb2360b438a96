package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Store appends to and reads from the event streams of one Redis.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	meta      func(context.Context) map[string]string
	published atomic.Int64
}

// Option configures a Store.
type Option func(*Store)

// WithMeta gives every appended event the metadata that meta reads from the
// command's context, e.g. its trace; an event's own Meta wins.
func WithMeta(meta func(context.Context) map[string]string) Option {
	return func(s *Store) { s.meta = meta }
}

// New returns a store. The prefix goes in front of every key; it is empty in
// production and lets tests share one Redis without seeing each other.
func New(rdb redis.UniversalClient, prefix string, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: prefix}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Redis is the client the store uses.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// Key names a key in the hash slot of a stream: Key("order", "versions") is
// "{order}:versions".
func (s *Store) Key(stream, name string) string {
	return s.prefix + "{" + stream + "}:" + name
}

// StreamKey is the key of a stream: "events:{order}".
func (s *Store) StreamKey(stream string) string {
	return s.prefix + "events:{" + stream + "}"
}

// Expected versions with a special meaning.
const (
	AnyVersion int64 = -1 // no check
	NoEntity   int64 = 0  // the entity must not have any event yet
)

// VersionArg stands for the version the append assigns; it may appear in the
// arguments of Writes. It reaches the script as a JSON object, which no
// string argument can be, so that no value a client sends is mistaken for it.
var VersionArg any = versionArg{}

type versionArg struct{}

func (versionArg) MarshalJSON() ([]byte, error) { return []byte(`{"version":true}`), nil }

// ErrConflict is matched by every ConflictError.
var ErrConflict = errors.New("version conflict")

// ConflictError says an entity was not at the version a command expected.
type ConflictError struct {
	EntityID         string
	Expected, Actual int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("entity %s is at version %d, not %d", e.EntityID, e.Actual, e.Expected)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Write is a Redis command run in the same atomic step as an append, e.g. an
// HSET of the entity cache. Its key must be in the stream's hash slot.
type Write struct {
	Cmd  string
	Key  string
	Args []any
}

// EncodeWrites turns writes into the form scripts run with
// redis.call(unpack(w)), and lists their keys, which a script must declare.
func EncodeWrites(ws []Write) (writes [][]any, keys []string) {
	writes = make([][]any, len(ws))
	for i, w := range ws {
		writes[i] = append([]any{w.Cmd, w.Key}, w.Args...)
		keys = append(keys, w.Key)
	}
	return writes, keys
}

// Record is one event to append.
type Record struct {
	Event    Event
	Expected int64   // AnyVersion, NoEntity, or the entity's current version
	Writes   []Write // run with the append, only if every check passed
}

// The script checks every expected version of the batch before it writes
// anything, so a batch is appended whole or not at all.
var appendScript = redis.NewScript(`
local heads, batch = {}, {}
for i = 1, #ARGV do
  local e = cjson.decode(ARGV[i])
  local cur = heads[e.id] or tonumber(redis.call('HGET', KEYS[2], e.id) or 0)
  if e.expected >= 0 and e.expected ~= cur then
    return redis.error_reply('CONFLICT ' .. e.id .. ' ' .. e.expected .. ' ' .. cur)
  end
  e.version = cur + 1
  heads[e.id] = e.version
  batch[i] = e
end
local function sub(args, from, v)
  for j = from, #args do if type(args[j]) == 'table' then args[j] = v end end
  return args
end
local out = {}
for i, e in ipairs(batch) do
  redis.call('HSET', KEYS[2], e.id, e.version)
  local id = redis.call('XADD', KEYS[1], '*', unpack(sub(e.fields, 1, e.version)))
  for _, w in ipairs(e.writes) do redis.call(unpack(sub(w, 3, e.version))) end
  out[i] = {id, e.version}
end
return out
`)

// Append writes records to the stream of one entity type in one atomic step
// and returns their events with stream ID and version set. A stale expected
// version fails the whole batch with a *ConflictError.
func (s *Store) Append(ctx context.Context, stream string, recs ...Record) ([]Event, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	keys := []string{s.StreamKey(stream), s.Key(stream, "versions")}
	argv := make([]any, len(recs))
	var meta map[string]string
	if s.meta != nil {
		meta = s.meta(ctx)
	}
	for i := range recs {
		r := &recs[i]
		for k, v := range meta {
			if _, own := r.Event.Meta[k]; !own {
				if r.Event.Meta == nil {
					r.Event.Meta = map[string]string{}
				}
				r.Event.Meta[k] = v
			}
		}
		writes, wkeys := EncodeWrites(r.Writes)
		keys = append(keys, wkeys...)
		arg, err := json.Marshal(map[string]any{
			"id": r.Event.EntityID, "expected": r.Expected, "fields": r.Event.fields(), "writes": writes,
		})
		if err != nil {
			return nil, err
		}
		argv[i] = arg
	}
	res, err := appendScript.Run(ctx, s.rdb, keys, argv...).Slice()
	if err != nil {
		return nil, conflictOr(err)
	}
	out := make([]Event, len(recs))
	for i, r := range res {
		pair := r.([]any)
		out[i] = recs[i].Event
		out[i].StreamID = pair[0].(string)
		out[i].Version = pair[1].(int64)
	}
	s.published.Add(int64(len(out)))
	return out, nil
}

func conflictOr(err error) error {
	var id string
	var exp, act int64
	if !redis.HasErrorPrefix(err, "CONFLICT") {
		return err
	}
	msg := strings.TrimPrefix(err.Error(), "CONFLICT ")
	if _, scanErr := fmt.Sscanf(msg, "%s %d %d", &id, &exp, &act); scanErr != nil {
		return err
	}
	return &ConflictError{EntityID: id, Expected: exp, Actual: act}
}

// Version is the latest version of an entity in its stream, 0 if it has none.
func (s *Store) Version(ctx context.Context, stream, entityID string) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.Key(stream, "versions"), entityID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}
