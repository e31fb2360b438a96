package platform

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// logFlush bounds how long a log line waits in the buffer: on a crash, at
// most the Info and Debug lines of the last logFlush are lost.
const logFlush = 100 * time.Millisecond

// newLog is a service's log: JSON lines on w, buffered, as a write to
// stdout per line (the access log's, on every request) is a system call
// each. Lines are written out within flush, a line from Warn up at once
// with those before it, and all at the output's Close.
func newLog(w io.Writer, flush time.Duration) (*slog.Logger, *logOutput) {
	out := &logOutput{buf: bufio.NewWriterSize(w, 64<<10), flush: flush}
	out.timer = time.AfterFunc(flush, func() { out.Flush() })
	out.timer.Stop()
	return slog.New(urgent{slog.NewJSONHandler(out, nil), out}), out
}

// logOutput buffers what is written to it, whole writes (the log's lines)
// at a time, and writes it out when a line has waited flush: a timer, set
// by the first line into an empty buffer, so that an idle service has
// nothing to wake for.
type logOutput struct {
	mu    sync.Mutex
	buf   *bufio.Writer
	flush time.Duration
	timer *time.Timer
}

func (o *logOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(p) > o.buf.Available() && o.buf.Buffered() > 0 {
		// Whole lines only, so that nothing else written to the same
		// output (console spans) lands inside one.
		if err := o.buf.Flush(); err != nil {
			return 0, err
		}
	}
	if o.buf.Buffered() == 0 {
		o.timer.Reset(o.flush)
	}
	return o.buf.Write(p)
}

// Flush writes out what is buffered.
func (o *logOutput) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Flush()
}

// Close writes out what is buffered, as the process ends.
func (o *logOutput) Close() error {
	o.timer.Stop()
	return o.Flush()
}

// urgent writes out a line from Warn up before the call that logs it
// returns: such a line may be the last before the process exits.
type urgent struct {
	slog.Handler
	out *logOutput
}

func (h urgent) Handle(ctx context.Context, r slog.Record) error {
	if err := h.Handler.Handle(ctx, r); err != nil || r.Level < slog.LevelWarn {
		return err
	}
	return h.out.Flush()
}

func (h urgent) WithAttrs(attrs []slog.Attr) slog.Handler {
	return urgent{h.Handler.WithAttrs(attrs), h.out}
}

func (h urgent) WithGroup(name string) slog.Handler {
	return urgent{h.Handler.WithGroup(name), h.out}
}
