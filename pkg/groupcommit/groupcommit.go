// Package groupcommit groups concurrent calls into runs, as a database groups
// commits: while a queue's runs are in flight, the calls that come wait,
// and when a run is back, the first of them runs them all in the next.
// Under load one run carries many calls, which costs the far end and the
// round trips far less than a run each; alone, a call goes at once, with
// no timer and no added latency.
//
// The event store groups the appends to a stream so: one script run for
// many commits. Where the wait costs more than the round trips saved, as
// for calls that are few or cheap on the far end, a queue does not pay.
package groupcommit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Queue groups the calls to its Run. Set Run and MaxRuns before the first
// call; a Queue must not be copied after.
type Queue[In, Out any] struct {
	// Run does the calls of a run and sets the Out or Err of each. Its ctx
	// has the first call's values and ends once every call's context has
	// ended (see Do). A call it leaves alone fails with ErrNoAnswer.
	Run func(ctx context.Context, calls []*Call[In, Out])
	// MaxRuns is how many runs may be in flight: more than one lets the far
	// end have the next run at hand while the last one's answer travels
	// back; few let the calls that wait go together.
	MaxRuns int
	// MaxSize bounds the Size of the calls of a run, summed, where enough
	// wait, so that no run takes long; a call of more goes alone. Zero
	// bounds nothing.
	MaxSize int
	// Size is the size of a call's input; nil counts each call as 1.
	Size func(In) int

	mu      sync.Mutex
	running int // runs in flight
	waiting []*Call[In, Out]
}

// Call is one call of a run: its caller's context and input, and the
// output or error that Run sets.
type Call[In, Out any] struct {
	Ctx context.Context
	In  In
	Out Out
	Err error
	// batch is set, and wake closed, when the call is to run a batch; wake
	// is closed too when another call ran it and set Out or Err.
	batch []*Call[In, Out]
	wake  chan struct{}
}

// ErrNoAnswer is the error of a call whose run ended without an answer for
// it: it may or may not have been done.
var ErrNoAnswer = errors.New("groupcommit: the run ended without an answer for the call")

// Do returns the output of in once its run is done, run by this call or by
// another. A call whose ctx ends while it waits in the queue leaves it at
// once and is not run: Do returns ctx.Err() as is (context.Canceled or
// context.DeadlineExceeded). A call already taken into a run goes on while
// anyone in the run waits for it, and no longer: work whose callers all
// gave up (a request that timed out) is not done later, when the far end
// is back. Such a call may still be done after its ctx ended, so a caller
// that must know whether it was done uses an idempotency key and retries.
func (q *Queue[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	c := &Call[In, Out]{Ctx: ctx, In: in, wake: make(chan struct{})}
	q.mu.Lock()
	if q.running >= max(q.MaxRuns, 1) {
		q.waiting = append(q.waiting, c)
		q.mu.Unlock()
		select {
		case <-c.wake:
		case <-ctx.Done():
			if q.leave(c) {
				return c.Out, ctx.Err()
			}
			<-c.wake // taken into a run already: its answer comes
		}
		if c.batch == nil {
			return c.Out, c.Err
		}
	} else {
		q.running++
		c.batch = []*Call[In, Out]{c}
		q.mu.Unlock()
	}
	defer q.next() // also if Run panics: the queue must go on
	q.run(c.batch)
	return c.Out, c.Err
}

// leave takes c out of the calls that wait, if it still waits there.
func (q *Queue[In, Out]) leave(c *Call[In, Out]) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.waiting, c)
	if i < 0 {
		return false
	}
	q.waiting = slices.Delete(q.waiting, i, i+1)
	return true
}

// Waiting is the number of calls that wait for a run, and the number of
// runs in flight.
func (q *Queue[In, Out]) Waiting() (n, running int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting), q.running
}

// next hands the calls that wait, as many as a run takes, to the first of
// them to run, once a run is back.
func (q *Queue[In, Out]) next() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 {
		q.running--
		return
	}
	n, size := 1, q.size(q.waiting[0].In)
	for ; n < len(q.waiting); n++ {
		more := q.size(q.waiting[n].In)
		if q.MaxSize > 0 && size+more > q.MaxSize {
			break
		}
		size += more
	}
	next := q.waiting[0]
	next.batch = slices.Clone(q.waiting[:n])
	q.waiting = slices.Delete(q.waiting, 0, n)
	close(next.wake)
}

func (q *Queue[In, Out]) size(in In) int {
	if q.Size == nil {
		return 1
	}
	return q.Size(in)
}

// run runs the calls of a batch whose context has not ended, and wakes all
// but the first, which runs it.
func (q *Queue[In, Out]) run(batch []*Call[In, Out]) {
	defer func() {
		for _, c := range batch[1:] {
			close(c.wake)
		}
	}()
	var calls []*Call[In, Out]
	for _, c := range batch {
		if c.Err = c.Ctx.Err(); c.Err == nil {
			c.Err = ErrNoAnswer // until Run says otherwise
			calls = append(calls, c)
		}
	}
	if len(calls) == 0 {
		return
	}
	ctx, cancel := runContext(calls)
	defer cancel()
	q.Run(ctx, calls)
}

// runContext is the context of a run: the first call's values (its trace),
// ended once every call's context has ended, with the latest of their
// deadlines if each has one.
func runContext[In, Out any](calls []*Call[In, Out]) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(calls[0].Ctx))
	var latest time.Time
	for _, c := range calls {
		d, ok := c.Ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if !latest.IsZero() {
		var cancelDeadline context.CancelFunc
		ctx, cancelDeadline = context.WithDeadline(ctx, latest)
		cancelAll := cancel
		cancel = func() { cancelDeadline(); cancelAll() }
	}
	var waiting atomic.Int64
	waiting.Store(int64(len(calls)))
	stops := make([]func() bool, len(calls))
	for i, c := range calls {
		stops[i] = context.AfterFunc(c.Ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
