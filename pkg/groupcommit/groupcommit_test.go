package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/pkg/groupcommit"
)

// gate is a queue whose runs wait until the test lets each go, and that
// records the inputs of each run.
type gate struct {
	q      groupcommit.Queue[int, int]
	mu     sync.Mutex
	runs   [][]int
	ctxs   []context.Context
	let    chan struct{} // a receive lets one run answer
	answer func(in int) (int, error)
}

func newGate(maxRuns, maxSize int) *gate {
	g := &gate{let: make(chan struct{}), answer: func(in int) (int, error) { return 10 * in, nil }}
	g.q = groupcommit.Queue[int, int]{MaxRuns: maxRuns, MaxSize: maxSize, Size: func(in int) int { return max(in/100, 1) },
		Run: func(ctx context.Context, calls []*groupcommit.Call[int, int]) {
			g.mu.Lock()
			var ins []int
			for _, c := range calls {
				ins = append(ins, c.In)
			}
			g.runs = append(g.runs, ins)
			g.ctxs = append(g.ctxs, ctx)
			g.mu.Unlock()
			<-g.let
			for _, c := range calls {
				c.Out, c.Err = g.answer(c.In)
			}
		}}
	return g
}

// started is the number of runs begun so far.
func (g *gate) started() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.runs)
}

// result is a call's answer.
type result struct{ in, out int }

// call starts a Do of in on ctx and sends its answer to out.
func (g *gate) call(ctx context.Context, in int, out chan<- result, errs chan<- error) {
	go func() {
		o, err := g.q.Do(ctx, in)
		if err != nil {
			errs <- fmt.Errorf("%d: %w", in, err)
			return
		}
		out <- result{in, o}
	}()
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("not after 5s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fill starts maxRuns runs of one call each (1, 2, …) and waits until they
// are in flight.
func (g *gate) fill(t *testing.T, out chan result, errs chan error) {
	t.Helper()
	for i := range g.q.MaxRuns {
		g.call(context.Background(), i+1, out, errs)
		eventually(t, "run in flight", func() bool { return g.started() == i+1 })
	}
}

// queue starts calls of ins, one after the other, each waiting before the next.
func (g *gate) queue(t *testing.T, ctx context.Context, out chan result, errs chan error, ins ...int) {
	t.Helper()
	for _, in := range ins {
		n, _ := g.q.Waiting()
		g.call(ctx, in, out, errs)
		eventually(t, fmt.Sprintf("%d waiting", in), func() bool { w, _ := g.q.Waiting(); return w == n+1 })
	}
}

func TestACallAloneRunsAtOnceAndThoseThatWaitGoTogetherInOrder(t *testing.T) {
	g := newGate(2, 0)
	out, errs := make(chan result, 10), make(chan error, 10)
	g.fill(t, out, errs)
	g.queue(t, context.Background(), out, errs, 3, 4, 5, 6)
	if _, running := g.q.Waiting(); running != 2 {
		t.Fatalf("%d runs in flight, want 2", running)
	}
	for range 3 {
		g.let <- struct{}{}
	}
	got := map[int]int{}
	for range 6 {
		select {
		case r := <-out:
			got[r.in] = r.out
		case err := <-errs:
			t.Fatal(err)
		}
	}
	want := [][]int{{1}, {2}, {3, 4, 5, 6}}
	if !slices.EqualFunc(g.runs, want, slices.Equal) {
		t.Fatalf("runs %v, want %v", g.runs, want)
	}
	for in, o := range got {
		if o != 10*in {
			t.Fatalf("call %d answered %d, want %d", in, o, 10*in)
		}
	}
	if n, running := g.q.Waiting(); n != 0 || running != 0 {
		t.Fatalf("after: %d waiting, %d runs, want none", n, running)
	}
}

func TestARunTakesAtMostMaxSizeAndABiggerCallGoesAlone(t *testing.T) {
	g := newGate(1, 4) // Size: in/100, at least 1
	out, errs := make(chan result, 10), make(chan error, 10)
	g.fill(t, out, errs)
	g.queue(t, context.Background(), out, errs, 2, 3, 200, 4, 900, 5)
	go func() {
		for range 5 {
			g.let <- struct{}{}
		}
	}()
	for range 7 {
		select {
		case <-out:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	// 2+3+200 is 1+1+2 = 4; 4 would make 5; 900 is 9 and alone.
	want := [][]int{{1}, {2, 3, 200}, {4}, {900}, {5}}
	if !slices.EqualFunc(g.runs, want, slices.Equal) {
		t.Fatalf("runs %v, want %v", g.runs, want)
	}
}

func TestACallWhoseCallerGaveUpWhileItWaitedIsLeftOut(t *testing.T) {
	g := newGate(1, 0)
	out, errs := make(chan result, 10), make(chan error, 10)
	g.fill(t, out, errs)
	ctx, cancel := context.WithCancel(context.Background())
	g.queue(t, context.Background(), out, errs, 2)
	g.queue(t, ctx, out, errs, 3)
	g.queue(t, context.Background(), out, errs, 4)
	cancel()
	g.let <- struct{}{}
	g.let <- struct{}{}
	got := map[int]bool{}
	for range 4 {
		select {
		case r := <-out:
			got[r.in] = true
		case err := <-errs:
			if !errors.Is(err, context.Canceled) || err.Error() != "3: context canceled" {
				t.Fatalf("error %v, want call 3's context canceled", err)
			}
		}
	}
	want := [][]int{{1}, {2, 4}}
	if !slices.EqualFunc(g.runs, want, slices.Equal) || !got[1] || !got[2] || !got[4] {
		t.Fatalf("runs %v, answered %v; want runs %v, 1, 2 and 4 answered", g.runs, got, want)
	}
}

type key struct{}

func TestARunGoesOnWhileAnyoneWaitsForItAndNoLonger(t *testing.T) {
	g := newGate(1, 0)
	out, errs := make(chan result, 10), make(chan error, 10)
	g.fill(t, out, errs)
	first, cancelFirst := context.WithCancel(context.WithValue(context.Background(), key{}, "first"))
	second, cancelSecond := context.WithTimeout(context.Background(), time.Hour)
	defer cancelSecond()
	g.queue(t, first, out, errs, 2)
	g.queue(t, second, out, errs, 3)
	g.let <- struct{}{} // run 1 answers; run 2 of 2 and 3 starts
	eventually(t, "second run", func() bool { return g.started() == 2 })
	g.mu.Lock()
	ctx := g.ctxs[1]
	g.mu.Unlock()
	if ctx.Value(key{}) != "first" {
		t.Fatal("the run's context lacks the first call's values")
	}
	if d, ok := ctx.Deadline(); ok {
		t.Fatalf("the run has deadline %v, but call 2 has none", d)
	}
	cancelFirst()
	// A context runs its AfterFuncs in goroutines of their own: watch the run's
	// for a while after.
	for watch := time.Now().Add(100 * time.Millisecond); time.Now().Before(watch); time.Sleep(time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatal("the run ended when one of its two callers gave up")
		}
	}
	cancelSecond()
	eventually(t, "the run's context ends with its last caller", func() bool { return ctx.Err() != nil })
	g.let <- struct{}{}
}

func TestARunWithDeadlinesHasTheLatest(t *testing.T) {
	g := newGate(1, 0)
	out, errs := make(chan result, 10), make(chan error, 10)
	g.fill(t, out, errs)
	late := time.Now().Add(time.Hour)
	a, cancelA := context.WithDeadline(context.Background(), late.Add(-time.Minute))
	b, cancelB := context.WithDeadline(context.Background(), late)
	defer cancelA()
	defer cancelB()
	g.queue(t, a, out, errs, 2)
	g.queue(t, b, out, errs, 3)
	g.let <- struct{}{}
	eventually(t, "second run", func() bool { return g.started() == 2 })
	g.mu.Lock()
	d, ok := g.ctxs[1].Deadline()
	g.mu.Unlock()
	if !ok || !d.Equal(late) {
		t.Fatalf("the run's deadline is %v (%v), want the latest, %v", d, ok, late)
	}
	g.let <- struct{}{}
}

func TestACallTheRunLeavesUnansweredFailsAndAPanicDoesNotStopTheQueue(t *testing.T) {
	g := newGate(1, 0)
	g.answer = func(in int) (int, error) {
		if in == 3 {
			panic("run of 3")
		}
		return in, nil
	}
	out, errs := make(chan result, 10), make(chan error, 10)
	g.fill(t, out, errs)
	panicked := make(chan any, 1)
	n, _ := g.q.Waiting()
	go func() {
		defer func() { panicked <- recover() }()
		g.q.Do(context.Background(), 3)
	}()
	eventually(t, "3 waiting", func() bool { w, _ := g.q.Waiting(); return w == n+1 })
	g.queue(t, context.Background(), out, errs, 4)
	g.let <- struct{}{} // 1 answers; 3 runs 3 and 4, and panics
	g.let <- struct{}{}
	if p := <-panicked; p != "run of 3" {
		t.Fatalf("the leader's caller saw %v, want the run's panic", p)
	}
	<-out // 1
	if err := <-errs; !errors.Is(err, groupcommit.ErrNoAnswer) {
		t.Fatalf("call 4 in the run that panicked: %v, want ErrNoAnswer", err)
	}
	g.answer = func(in int) (int, error) { return in, nil }
	g.call(context.Background(), 5, out, errs)
	g.let <- struct{}{}
	if r := <-out; r.in != 5 {
		t.Fatalf("after the panic: %v", r)
	}
	if n, running := g.q.Waiting(); n != 0 || running != 0 {
		t.Fatalf("after: %d waiting, %d runs, want none", n, running)
	}
}

func TestAQueuedCallReturnsWhenItsDeadlinePassesAndIsNotRun(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var ran []int
	q := &groupcommit.Queue[int, int]{MaxRuns: 1, Run: func(ctx context.Context, calls []*groupcommit.Call[int, int]) {
		for _, c := range calls {
			if c.In == 1 {
				<-release
			}
			mu.Lock()
			ran = append(ran, c.In)
			mu.Unlock()
			c.Out, c.Err = c.In, nil
		}
	}}
	first := make(chan error, 1)
	go func() { _, err := q.Do(context.Background(), 1); first <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for _, running := q.Waiting(); running == 0; _, running = q.Waiting() {
		if time.Now().After(deadline) {
			t.Fatal("the first run never started")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := q.Do(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued call: err %v, want context.DeadlineExceeded", err)
	}
	select {
	case <-first:
		t.Fatal("the queued call returned only after the blocked run ended")
	default:
	}
	if n, _ := q.Waiting(); n != 0 {
		t.Fatalf("%d calls still wait after the caller gave up", n)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if out, err := q.Do(context.Background(), 3); err != nil || out != 3 {
		t.Fatalf("after: %d, %v", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(ran, []int{1, 3}) {
		t.Fatalf("ran %v, want [1 3]: the call that gave up must not run", ran)
	}
}
