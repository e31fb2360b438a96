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
	Trace string `json:"traceparent"` // the mail's own
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
// it takes mails as msg's POST /emails does, records each key's mail once,
// and fails the mails to the addresses it is told to fail for, answering
// 503 when every mail of a request failed.
type MailPeer struct {
	*httptest.Server
	mu       sync.Mutex
	mails    map[string]Mail
	fail     map[string]bool
	requests int
}

// NewMailPeer serves a MailPeer until the test ends.
func NewMailPeer(t testing.TB) *MailPeer {
	p := &MailPeer{mails: map[string]Mail{}, fail: map[string]bool{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var mails []Mail
		if err := json.NewDecoder(r.Body).Decode(&mails); err != nil || r.URL.Path != "/emails" || len(mails) == 0 {
			platform.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "bad mails"})
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.requests++
		answers, failed := make([]map[string]any, len(mails)), 0
		for i, m := range mails {
			if p.fail[m.To] {
				answers[i] = map[string]any{"error": "mail server down"}
				failed++
				continue
			}
			_, dup := p.mails[m.Key]
			if !dup {
				p.mails[m.Key] = m
			}
			answers[i] = map[string]any{"id": uuid.NewString(), "sent": !dup}
		}
		if failed == len(mails) {
			platform.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "mail server down"})
			return
		}
		platform.WriteJSON(w, http.StatusOK, answers)
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

// Requests is the number of requests that carried mails.
func (p *MailPeer) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}
