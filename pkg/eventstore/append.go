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
	rdb        redis.UniversalClient
	prefix     string
	partitions int // of each entity type's stream; 1 when not split
	meta       func(context.Context) map[string]string
	appended   func(streamKey string, n int)
	published  atomic.Int64
}

// Option configures a Store.
type Option func(*Store)

// WithMeta gives every appended event the metadata that meta reads from the
// command's context, e.g. its trace; an event's own Meta wins.
func WithMeta(meta func(context.Context) map[string]string) Option {
	return func(s *Store) { s.meta = meta }
}

// WithAppended has the store call appended after each append with the
// stream's key and the number of events appended, e.g. to count them. A
// repeated append, which writes nothing, is reported again.
func WithAppended(appended func(streamKey string, n int)) Option {
	return func(s *Store) { s.appended = appended }
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
// HSET of the entity cache. Its key must be in the stream's hash slot. The
// script checks every write before it runs the first, so a Write is one of
// the commands it knows the key type of: DEL (of Key alone), HSET, HDEL,
// SADD, SREM, ZADD (score, member pairs), ZREM, RPUSH or LPUSH.
type Write struct {
	Cmd  string
	Key  string
	Args []any
}

// maxArgs bounds the args of one command a script runs with unpack, which
// fails on some thousands of values. It is even, so that an HSET is cut
// between pairs.
const maxArgs = 1000

// EncodeWrites turns writes into the form scripts run with
// redis.call(unpack(w)), and lists their keys, which a script must declare.
// A write of more than maxArgs args becomes several writes of the same
// command, which for a list of items or pairs changes nothing. Every arg
// but VersionArg becomes a string, as cjson would read a number as a double.
func EncodeWrites(ws []Write) (writes [][]any, keys []string) {
	writes = make([][]any, 0, len(ws)) // [], not null, in JSON
	for _, w := range ws {
		keys = append(keys, w.Key)
		args := w.Args
		for {
			n := min(len(args), maxArgs)
			cmd := make([]any, 0, 2+n)
			cmd = append(cmd, w.Cmd, w.Key)
			for _, a := range args[:n] {
				cmd = append(cmd, text(a))
			}
			writes = append(writes, cmd)
			if args = args[n:]; len(args) == 0 {
				break
			}
		}
	}
	return writes, keys
}

// text is an arg as the string Redis would receive; VersionArg stays itself.
func text(a any) any {
	switch a := a.(type) {
	case versionArg, string:
		return a
	case []byte:
		return string(a)
	}
	return fmt.Sprint(a)
}

// Record is one event to append.
type Record struct {
	Event    Event
	Expected int64   // AnyVersion, NoEntity, or the entity's current version
	Writes   []Write // run with the append, only if every check passed
}

// The script writes nothing before it has checked everything that could make
// a write fail, because Redis does not undo the writes of a script that
// fails halfway: a batch is appended whole or not at all. Its marker makes it
// safe to run again: go-redis sends a script again when the reply was lost,
// and the second run answers what the first did.
//
// KEYS: the stream, the versions hash, the marker, the keys of the writes.
// ARGV: one JSON record per event, {id, expected, fields, writes}.
var appendScript = redis.NewScript(`
local done = redis.call('GET', KEYS[3])
if done then return cjson.decode(done) end

local function fail(msg) error({err = 'ERR append refused: ' .. msg}) end

-- need checks that key will hold a want, or nothing, when the writes checked
-- before have run, and notes what it holds after; want is 'none' for DEL.
local types = {}
local function need(key, want)
  local t = types[key] or redis.call('TYPE', key).ok
  if want ~= 'none' and t ~= 'none' and t ~= want then
    fail(key .. ' holds a ' .. t .. ', not a ' .. want)
  end
  types[key] = want
end

-- The key type each write command needs, and the args of one item: DEL
-- takes its key alone, HSET pairs.
local commands = {
  DEL = {'none', 0}, HSET = {'hash', 2}, HDEL = {'hash', 1},
  SADD = {'set', 1}, SREM = {'set', 1}, ZADD = {'zset', 2}, ZREM = {'zset', 1},
  RPUSH = {'list', 1}, LPUSH = {'list', 1},
}

-- put sets the version in place of the placeholder, the object
-- {"version":true} exactly; every other arg must be a string, as Go sends.
local function placeholder(a)
  if type(a) ~= 'table' or a.version ~= true then return false end
  for k in pairs(a) do if k ~= 'version' then return false end end
  return true
end
local function put(args, from, v)
  for j = from, #args do
    if type(args[j]) ~= 'string' then
      if not placeholder(args[j]) then fail('arg ' .. j .. ' is not a string') end
      args[j] = v
    end
  end
end

local heads, batch = {}, {}
for i = 1, #ARGV do
  local e = cjson.decode(ARGV[i])
  need(KEYS[2], 'hash')
  local cur = heads[e.id] or tonumber(redis.call('HGET', KEYS[2], e.id) or 0)
  if e.expected >= 0 and e.expected ~= cur then
    return redis.error_reply(string.format('CONFLICT %d %d %s', e.expected, cur, e.id))
  end
  e.version = cur + 1
  heads[e.id] = e.version
  need(KEYS[1], 'stream')
  put(e.fields, 1, e.version)
  for _, w in ipairs(e.writes) do
    local c, n = commands[string.upper(w[1])], #w - 2
    if not c or (c[2] == 0 and n > 0) or (c[2] > 0 and (n == 0 or n % c[2] ~= 0)) then
      fail(w[1] .. ' with ' .. n .. ' args')
    end
    need(w[2], c[1])
    put(w, 3, e.version)
  end
  batch[i] = e
end

local out = {}
for i, e in ipairs(batch) do
  redis.call('HSET', KEYS[2], e.id, e.version)
  local id = redis.call('XADD', KEYS[1], '*', unpack(e.fields))
  for _, w in ipairs(e.writes) do redis.call(unpack(w)) end
  out[i] = {id, e.version}
end
-- A minute: far longer than go-redis goes on retrying.
redis.call('SET', KEYS[3], cjson.encode(out), 'EX', 60)
return out
`)

// Append writes records to the stream of one entity type in one atomic step
// and returns their events with stream ID and version set. A stale expected
// version fails the whole batch with a *ConflictError, an event no reader
// could decode with ErrInvalidEvent, a write that would fail with an error:
// in each case before anything is written. Appending the same events again
// within minutes (the first event's ID tells) writes nothing and returns
// what the first append did, so that a retry is safe.
func (s *Store) Append(ctx context.Context, stream string, recs ...Record) ([]Event, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	keys := []string{s.StreamKey(stream), s.Key(stream, "versions"), s.Key(stream, "appended:"+recs[0].Event.ID)}
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
		if err := r.Event.check(); err != nil {
			return nil, fmt.Errorf("event %d of %d: %w", i+1, len(recs), err)
		}
		fields := r.Event.fields()
		if len(fields) > maxArgs {
			return nil, fmt.Errorf("event %d of %d: %w: %d metadata entries", i+1, len(recs), ErrInvalidEvent, len(r.Event.Meta))
		}
		writes, wkeys := EncodeWrites(r.Writes)
		keys = append(keys, wkeys...)
		arg, err := json.Marshal(map[string]any{
			"id": r.Event.EntityID, "expected": r.Expected, "fields": fields, "writes": writes,
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
	if len(res) != len(recs) {
		return nil, fmt.Errorf("eventstore: event %s was appended before, in a batch of %d events, not %d", recs[0].Event.ID, len(res), len(recs))
	}
	out := make([]Event, len(recs))
	for i, r := range res {
		pair := r.([]any)
		out[i] = recs[i].Event
		out[i].StreamID = pair[0].(string)
		out[i].Version = pair[1].(int64)
	}
	s.published.Add(int64(len(out)))
	if s.appended != nil {
		s.appended(s.StreamKey(stream), len(out))
	}
	return out, nil
}

// conflictOr reads a CONFLICT reply, "CONFLICT <expected> <actual> <id>",
// into a *ConflictError. The id comes last as it may hold spaces.
func conflictOr(err error) error {
	if !redis.HasErrorPrefix(err, "CONFLICT") {
		return err
	}
	parts := strings.SplitN(strings.TrimPrefix(err.Error(), "CONFLICT "), " ", 3)
	if len(parts) != 3 {
		return err
	}
	exp, expErr := strconv.ParseInt(parts[0], 10, 64)
	act, actErr := strconv.ParseInt(parts[1], 10, 64)
	if expErr != nil || actErr != nil {
		return err
	}
	return &ConflictError{EntityID: parts[2], Expected: exp, Actual: act}
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
