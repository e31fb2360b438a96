package platform

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
)

// stdout records what the log writes, and in how many writes.
type stdout struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
	partial bool // a write that ends inside a line
}

func (s *stdout) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	s.partial = s.partial || !bytes.HasSuffix(p, []byte("\n"))
	return s.buf.Write(p)
}

// lines is the number of lines written, and of writes.
func (s *stdout) lines() (lines, writes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.buf.String(), "\n"), s.writes
}

// Lines are written out together, within the flush interval, with no stop.
func TestLogLinesAreWrittenOutTogetherWithinTheFlushInterval(t *testing.T) {
	t.Parallel()
	var out stdout
	log, _ := newLog(&out, logFlush)
	for i := range 100 {
		log.Info("request", "i", i)
	}
	redistest.Eventually(t, 10*logFlush, "the lines written out", func() bool {
		n, _ := out.lines()
		return n == 100
	})
	if _, writes := out.lines(); writes > 5 {
		t.Errorf("100 lines in %d writes, want a few", writes)
	}
}

// A line from Warn up is written out before the call that logs it returns,
// with the lines before it.
func TestALogLineFromWarnUpIsWrittenOutAtOnce(t *testing.T) {
	t.Parallel()
	var out stdout
	log, _ := newLog(&out, time.Hour)
	log = log.With("service", "logged")
	log.Info("request")
	log.Warn("not ready")
	if n, _ := out.lines(); n != 2 {
		t.Fatalf("%d lines written after a Warn, want 2", n)
	}
	log.Info("request")
	log.Error("stopped")
	if n, _ := out.lines(); n != 4 {
		t.Fatalf("%d lines written after an Error, want 4", n)
	}
}

// Closing the log's output writes out every line; a buffer that fills up
// meanwhile is written out in whole lines.
func TestClosingTheLogWritesOutEveryLineWhole(t *testing.T) {
	t.Parallel()
	var out stdout
	log, o := newLog(&out, time.Hour)
	log.Info("request")
	if n, _ := out.lines(); n != 0 {
		t.Fatalf("%d lines written at once, want them buffered", n)
	}
	for i := range 2000 {
		log.Info("request", "method", "POST", "route", "/customers", "status", 200, "i", i)
	}
	o.Close()
	if n, writes := out.lines(); n != 2001 || writes < 2 || out.partial {
		t.Fatalf("%d lines in %d writes, one ending inside a line: %v; want 2001 lines in a few writes, each of whole lines", n, writes, out.partial)
	}
}
