package platformtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
)

// Mail is a mail as services send it to msg.
type Mail struct {
	To    string `json:"to"`
	Msg   string `json:"msg"`
	Key   string `json:"key"`
	Trace string `json:"-"` // the request's traceparent
}

// TraceID is the trace id of a W3C traceparent, "" if it is none: a
// handler's call carries the trace of the event, in a span of its own.
func TraceID(traceparent string) string {
	if parts := strings.Split(traceparent, "-"); len(parts) == 4 && len(parts[1]) == 32 {
		return parts[1]
	}
	return ""
}

// MailPeer stands in for msg over HTTP in the tests of services that mail:
// it records each key's mail once, as msg does, and answers 503 for the
// addresses it is told to fail for.
type MailPeer struct {
	*httptest.Server
	mu    sync.Mutex
	mails map[string]Mail
	fail  map[string]bool
}

// NewMailPeer serves a MailPeer until the test ends.
func NewMailPeer(t testing.TB) *MailPeer {
	p := &MailPeer{mails: map[string]Mail{}, fail: map[string]bool{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m Mail
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.URL.Path != "/email" {
			platform.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "bad mail"})
			return
		}
		m.Trace = r.Header.Get("traceparent")
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.fail[m.To] {
			platform.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "mail server down"})
			return
		}
		_, dup := p.mails[m.Key]
		if !dup {
			p.mails[m.Key] = m
		}
		platform.WriteJSON(w, http.StatusOK, map[string]any{"id": uuid.NewString(), "sent": !dup})
	}))
	t.Cleanup(p.Close)
	return p
}

// FailFor makes mails to an address fail, or succeed again.
func (p *MailPeer) FailFor(addr string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[addr] = fail
}

// To lists the mails to an address, sorted by key.
func (p *MailPeer) To(addr string) []Mail {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Mail
	for _, m := range p.mails {
		if m.To == addr {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b Mail) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Count is the number of mails recorded.
func (p *MailPeer) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mails)
}
