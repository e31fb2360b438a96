package platform

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/ordershop/ordershop/pkg/eventstore"
)

// progress reports, every tick until stop, how far a run through total
// events is: done, rate, time left, on one line it writes over. It is for a
// person at a terminal: onTerminal says whether there is one.
type progress struct {
	what  string
	total int64
	start time.Time
	done  atomic.Int64
}

// line is the report at now.
func (p *progress) line(now time.Time) string {
	done, took := p.done.Load(), now.Sub(p.start)
	rate := float64(done) / max(took.Seconds(), 1e-3)
	line := fmt.Sprintf("%s: %d of %d events", p.what, done, p.total)
	if p.total > 0 {
		line += fmt.Sprintf(" (%d%%)", min(100, 100*done/p.total))
	}
	line += fmt.Sprintf(", %.0f events/s", rate)
	if left := p.total - done; left > 0 && rate > 0 {
		line += fmt.Sprintf(", %v left", (time.Duration(float64(left) / rate * float64(time.Second))).Round(time.Second))
	}
	return line
}

// showProgress counts the events replayed on the context it returns and
// writes the report to out every tick; stop writes the last one and ends
// the line.
func showProgress(ctx context.Context, out io.Writer, what string, total int64, tick time.Duration) (context.Context, func()) {
	p := &progress{what: what, total: total, start: time.Now()}
	ctx = eventstore.CountingReplays(ctx, &p.done)
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprintf(out, "\r%s\033[K\n", p.line(time.Now()))
				return
			case now := <-t.C:
				fmt.Fprintf(out, "\r%s\033[K", p.line(now))
			}
		}
	}()
	return ctx, func() { close(quit); <-finished }
}

// onTerminal says whether f is a terminal, where a progress line that
// writes over itself is read, not logged.
func onTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// eventCount is how many events the streams hold: what a replay of them
// goes through.
func eventCount(ctx context.Context, store *eventstore.Store, streams []string) (int64, error) {
	var n int64
	for _, s := range streams {
		for _, part := range store.Partitions(s) {
			info, err := store.Info(ctx, part)
			if err != nil {
				return 0, err
			}
			n += info.Length
		}
	}
	return n, nil
}
