package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/pkg/groupcommit"
)

// Store appends to and reads from the event streams of one Redis.
type Store struct {
	rdb        redis.UniversalClient
	prefix     string
	partitions int // of each entity type's stream; 1 when not split
	meta       func(context.Context) map[string]string
	appended   func(streamKey string, n int)
	queues     sync.Map // stream name → its append queue (see queue)
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
// becomes a string, as cjson would read a number as a double.
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

// text is an arg as the string Redis would receive.
func text(a any) string {
	switch a := a.(type) {
	case string:
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

// The script runs the appends of one or more commits, each a group of
// records, one after another in one atomic step: a group is written whole or
// refused whole, whatever the others do, as if it ran alone after the groups
// before it. The script writes nothing before it has checked every group,
// because Redis does not undo the writes of a script that fails halfway. A
// group's marker makes it safe to run again: go-redis sends a script again
// when the reply was lost, and the second run answers for the group what the
// first did.
//
// Its arguments are flat strings, which it reads in place: no JSON to decode,
// no table per event, and each one costs Redis a string to make, so there
// are few. KEYS: the stream, the versions hash, the markers of the groups in
// order, the keys of the writes. ARGV: the number of groups, then per group
// the number of ARGV it takes after that number, the seconds its marker is
// kept (see markerTTL), and per event of it: the entity id, the expected
// version, the event ID, type, entity type, time and entity (the field names
// are the script's own), the number of meta args and those args, the number
// of writes, and the writes. A write is its command, the index of its key in
// KEYS, the number n of its args, and the args. The reply has one element per group: its events'
// stream IDs and versions, or the error that refused it.
var appendScript = redis.NewScript(`
-- kind is the key type a write command needs and the args of one item: DEL
-- takes its key alone, HSET pairs. An if chain, as a table of them would be
-- built again on every run.
local function kind(cmd)
  if cmd == 'HSET' then return 'hash', 2 elseif cmd == 'SADD' then return 'set', 1
  elseif cmd == 'ZADD' then return 'zset', 2 elseif cmd == 'DEL' then return 'none', 0
  elseif cmd == 'RPUSH' or cmd == 'LPUSH' then return 'list', 1
  elseif cmd == 'HDEL' then return 'hash', 1 elseif cmd == 'SREM' then return 'set', 1
  elseif cmd == 'ZREM' then return 'zset', 1 end
end

-- write reads the write at ARGV[w]: its command, key, args from ARGV[a] to
-- ARGV[a + n - 1], and where the next write begins.
local function write(w)
  local n = tonumber(ARGV[w + 2])
  return ARGV[w], KEYS[tonumber(ARGV[w + 1])], w + 3, n, w + 3 + n
end

-- types holds what each key will hold once the groups accepted so far are
-- written, heads each entity's version then; a group's own changes are kept
-- apart until it is accepted.
local types, heads = {}, {}

-- check checks the group in ARGV[from] to ARGV[last]: the versions, then
-- every key each write needs. It answers the versions the group's events
-- get, or the error that refuses it.
local function check(from, last)
  local ts, hs, versions = {}, {}, {}
  -- need checks that key will hold a want, or nothing, when the writes
  -- checked before have run, and notes what it holds after; want is 'none'
  -- for DEL, which takes a key of any type.
  local function need(key, want)
    if want ~= 'none' then
      local t = ts[key] or types[key]
      if not t then
        t = redis.call('TYPE', key).ok
        types[key] = t -- nothing is written before every group is checked
      end
      if t ~= 'none' and t ~= want then return key .. ' holds a ' .. t .. ', not a ' .. want end
    end
    ts[key] = want
  end
  local i = from
  while i <= last do
    local id, expected = ARGV[i], tonumber(ARGV[i + 1])
    -- The HGET fails the whole script unless the versions hash is one or
    -- nothing: before anything is written, so no TYPE.
    local cur = hs[id] or heads[id] or tonumber(redis.call('HGET', KEYS[2], id) or 0)
    types[KEYS[2]] = types[KEYS[2]] or 'hash'
    local bad = need(KEYS[2], 'hash')
    if bad then return nil, 'ERR append refused: ' .. bad end
    if expected >= 0 and expected ~= cur then
      return nil, string.format('CONFLICT %d %d %s', expected, cur, id)
    end
    hs[id] = cur + 1
    versions[#versions + 1] = cur + 1
    bad = need(KEYS[1], 'stream')
    if bad then return nil, 'ERR append refused: ' .. bad end
    local w = i + 8 + tonumber(ARGV[i + 7])
    i = w + 1
    for _ = 1, tonumber(ARGV[w]) do
      local cmd, key, _, n
      cmd, key, _, n, i = write(i)
      local t, item = kind(cmd)
      if not t or (item == 0 and n > 0) or (item > 0 and (n == 0 or n % item ~= 0)) then
        return nil, 'ERR append refused: ' .. cmd .. ' with ' .. n .. ' args'
      end
      bad = need(key, t)
      if bad then return nil, 'ERR append refused: ' .. bad end
    end
  end
  for k, t in pairs(ts) do types[k] = t end
  for id, v in pairs(hs) do heads[id] = v end
  return versions
end

-- apply writes the checked group in ARGV[from] on, with its versions, and
-- its marker, kept for ttl seconds; it answers the events' stream IDs and
-- versions.
local function apply(from, versions, marker, ttl)
  local out, flat, i = {}, {}, from
  for e, v in ipairs(versions) do
    local id, meta = ARGV[i], tonumber(ARGV[i + 7])
    redis.call('HSET', KEYS[2], id, v)
    local sid = redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[i + 2], 'type', ARGV[i + 3],
      'entity_type', ARGV[i + 4], 'entity_id', id, 'version', v, 'time', ARGV[i + 5],
      'entity', ARGV[i + 6], unpack(ARGV, i + 8, i + 7 + meta))
    local w = i + 8 + meta
    i = w + 1
    for _ = 1, tonumber(ARGV[w]) do
      local cmd, key, a, n
      cmd, key, a, n, i = write(i)
      redis.call(cmd, key, unpack(ARGV, a, a + n - 1))
    end
    out[e] = {sid, v}
    flat[2 * e - 1], flat[2 * e] = sid, v
  end
  redis.call('SET', marker, table.concat(flat, ' '), 'EX', ttl)
  return out
end

-- Check every group, then write the accepted ones in order. A group whose
-- marker an accepted group before it has (the same append twice in one
-- run) answers what that one does.
local replies, accepted, first, twins, at = {}, {}, {}, {}, 2
for g = 1, tonumber(ARGV[1]) do
  local last, marker = at + tonumber(ARGV[at]), KEYS[2 + g]
  local done = redis.call('GET', marker)
  if done then
    local out = {}
    for id, v in string.gmatch(done, '(%S+) (%S+)') do out[#out + 1] = {id, tonumber(v)} end
    replies[g] = out
  elseif first[marker] then
    twins[#twins + 1] = {g, first[marker]}
  else
    local versions, err = check(at + 2, last)
    if versions then
      accepted[#accepted + 1] = {g, at + 2, versions, ARGV[at + 1]}
      first[marker] = g
    else
      replies[g] = {err = err}
    end
  end
  at = last + 1
end
for _, a in ipairs(accepted) do replies[a[1]] = apply(a[2], a[3], KEYS[2 + a[1]], a[4]) end
for _, t in ipairs(twins) do replies[t[1]] = replies[t[2]] end
return replies
`)

// Append writes records to the stream of one entity type in one atomic step
// and returns their events with stream ID and version set. A stale expected
// version fails the whole batch with a *ConflictError, an event no reader
// could decode with ErrInvalidEvent, a write that would fail with an error:
// in each case before anything is written. Appending the same events again
// within minutes (the first event's ID tells) writes nothing and returns
// what the first append did, so that a retry is safe; on a ctx
// WithIdempotencyKey the event IDs derive from the key, and that holds for
// a day (see KeepKeyed).
//
// Appends to one stream that come while others are in flight wait for one
// of them and then go to Redis together, in one script run (see
// Store.queue): each is still written whole or refused whole, on its own.
// An append whose ctx ends is given up, and not written later, unless
// others in its run still wait for it (see groupcommit.Queue.Do).
func (s *Store) Append(ctx context.Context, stream string, recs ...Record) ([]Event, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	var meta map[string]string
	if s.meta != nil {
		meta = s.meta(ctx)
	}
	keyed := IdempotencyKey(ctx) != ""
	for i := range recs {
		r := &recs[i]
		if keyed {
			r.Event.ID = keyedEventID(ctx, r.Event.EntityType, r.Event.EntityID, r.Event.Type)
		}
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
		if 2*len(r.Event.Meta) > maxArgs {
			return nil, fmt.Errorf("event %d of %d: %w: %d metadata entries", i+1, len(recs), ErrInvalidEvent, len(r.Event.Meta))
		}
	}
	out, err := s.queue(stream).Do(ctx, recs)
	if err != nil {
		return nil, err
	}
	if s.appended != nil {
		s.appended(s.StreamKey(stream), len(out))
	}
	return out, nil
}

// appendCall is one Append in a stream's queue.
type appendCall = groupcommit.Call[[]Record, []Event]

// maxRuns is how many runs of one stream's appends may be in flight (see
// groupcommit.Queue.MaxRuns).
const maxRuns = 2

// maxGroup bounds the records of one run, where enough appends wait: so
// that a run never takes long. A commit of more goes alone.
const maxGroup = 256

// queue is the append queue of a stream: while maxRuns script runs are in
// flight, the appends that come wait, and when one is back, the first of
// them runs them all in the next.
func (s *Store) queue(stream string) *groupcommit.Queue[[]Record, []Event] {
	if q, ok := s.queues.Load(stream); ok {
		return q.(*groupcommit.Queue[[]Record, []Event])
	}
	q, _ := s.queues.LoadOrStore(stream, &groupcommit.Queue[[]Record, []Event]{
		MaxRuns: maxRuns, MaxSize: maxGroup,
		Size: func(recs []Record) int { return len(recs) },
		Run:  func(ctx context.Context, calls []*appendCall) { s.run(ctx, stream, calls) },
	})
	return q.(*groupcommit.Queue[[]Record, []Event])
}

// run appends the calls of a run in one script run, each as its group, and
// sets the Out or Err of each.
func (s *Store) run(ctx context.Context, stream string, calls []*appendCall) {
	a := appendArgs{keys: []string{s.StreamKey(stream), s.Key(stream, "versions")}, argv: []any{len(calls)}}
	for _, c := range calls {
		a.keys = append(a.keys, s.marker(stream, c.In[0].Event.ID))
	}
	for _, c := range calls {
		a.group(c.In, markerTTL(c.Ctx))
	}
	res, err := appendScript.Run(ctx, s.rdb, a.keys, a.argv...).Slice()
	if err == nil && len(res) != len(calls) {
		err = fmt.Errorf("eventstore: the append script answered %d groups, not %d", len(res), len(calls))
	}
	for i, c := range calls {
		if err != nil {
			c.Err = err
		} else {
			c.Out, c.Err = events(c.In, res[i])
		}
	}
}

// events reads the reply of a commit's group into its events.
func events(recs []Record, reply any) ([]Event, error) {
	if err, ok := reply.(error); ok {
		return nil, conflictOr(err)
	}
	pairs, _ := reply.([]any)
	if len(pairs) != len(recs) {
		return nil, fmt.Errorf("eventstore: event %s was appended before, in a batch of %d events, not %d", recs[0].Event.ID, len(pairs), len(recs))
	}
	out := make([]Event, len(recs))
	for i, p := range pairs {
		pair, _ := p.([]any)
		if len(pair) != 2 {
			return nil, fmt.Errorf("eventstore: the append script answered %v for event %s", p, recs[i].Event.ID)
		}
		id, okID := pair[0].(string)
		version, okVersion := pair[1].(int64)
		if !okID || !okVersion {
			return nil, fmt.Errorf("eventstore: the append script answered %v for event %s", p, recs[i].Event.ID)
		}
		out[i] = recs[i].Event
		out[i].StreamID, out[i].Version = id, version
	}
	return out, nil
}

// appendArgs are the KEYS and ARGV of the append script.
type appendArgs struct {
	keys  []string
	argv  []any
	index map[string]int // of the writes' keys in keys
}

// group appends a commit's records: its length, its marker's time to live
// in seconds, then its events.
func (a *appendArgs) group(recs []Record, ttl time.Duration) {
	head := len(a.argv)
	a.argv = append(a.argv, 0, int64(ttl/time.Second))
	for i := range recs {
		r := &recs[i]
		e := &r.Event
		a.argv = append(a.argv, e.EntityID, r.Expected, e.ID, e.Type, e.EntityType,
			e.Time.UTC().Format(time.RFC3339Nano), string(e.Entity), 2*len(e.Meta))
		for k, v := range e.Meta {
			a.argv = append(a.argv, metaPrefix+k, v)
		}
		a.argv = append(a.argv, 0)
		count := len(a.argv) - 1
		for _, w := range r.Writes {
			for args := w.Args; ; {
				n := min(len(args), maxArgs)
				a.write(w.Cmd, w.Key, args[:n])
				a.argv[count] = a.argv[count].(int) + 1
				if args = args[n:]; len(args) == 0 {
					break
				}
			}
		}
	}
	a.argv[head] = len(a.argv) - head - 1
}

// write appends a write of args, each as text.
func (a *appendArgs) write(cmd, key string, args []any) {
	i, ok := a.index[key]
	if !ok {
		if a.index == nil {
			a.index = map[string]int{}
		}
		i = len(a.keys)
		a.index[key] = i
		a.keys = append(a.keys, key)
	}
	a.argv = append(a.argv, strings.ToUpper(cmd), i+1, len(args))
	for _, arg := range args {
		a.argv = append(a.argv, text(arg))
	}
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
