package eventstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/pkg/groupcommit"
)

// Expected versions with a special meaning.
const (
	AnyVersion int64 = -1 // no check
	NoEntity   int64 = 0  // the entity must not have any event yet
)

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
//
//go:embed append.lua
var appendLua string

var appendScript = redis.NewScript(appendLua)

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
		a.group(c.In, markerTTL(c.Ctx), deadline(c.Ctx))
	}
	res, err := s.evalAppend(ctx, a)
	var lag error // the groups written are not on enough replicas
	if errors.Is(err, ErrNotReplicated) {
		lag, err = err, nil
	}
	if err == nil && len(res) != len(calls) {
		err = fmt.Errorf("eventstore: the append script answered %d groups, not %d", len(res), len(calls))
	}
	for i, c := range calls {
		if err != nil {
			c.Err = err
		} else {
			c.Out, c.Err = events(c.In, res[i])
			if c.Err == nil && lag != nil {
				c.Out, c.Err = nil, lag
			}
		}
	}
}

// events reads the reply of a commit's group into its events.
func events(recs []Record, reply any) ([]Event, error) {
	if err, ok := reply.(error); ok {
		return nil, refusal(err)
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
