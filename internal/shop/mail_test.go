package shop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/groupcommit"
)

// msgStub takes POST /emails as msg does; answer says what to answer for
// the mails of each request, held until the test lets it go.
type msgStub struct {
	*httptest.Server
	mu       sync.Mutex
	requests [][]Mail
	hold     chan struct{}
	once     sync.Once
	answer   func(w http.ResponseWriter, mails []Mail)
}

func newMsgStub(t *testing.T) *msgStub {
	s := &msgStub{hold: make(chan struct{})}
	s.answer = func(w http.ResponseWriter, mails []Mail) {
		answers := make([]MailAnswer, len(mails))
		for i, m := range mails {
			answers[i] = MailAnswer{ID: EmailID(m.Key), Sent: true}
		}
		platform.WriteJSON(w, http.StatusOK, answers)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var mails []Mail
		if err := json.NewDecoder(r.Body).Decode(&mails); err != nil || r.URL.Path != "/emails" {
			platform.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "not a list of mails"})
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, mails)
		s.mu.Unlock()
		<-s.hold
		s.answer(w, mails)
	}))
	t.Cleanup(s.Close)
	t.Cleanup(s.release) // before Close, which waits for the requests
	return s
}

// release lets the requests held, and those to come, be answered.
func (s *msgStub) release() { s.once.Do(func() { close(s.hold) }) }

// keys are the keys of the mails of each request so far.
func (s *msgStub) keys() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]string
	for _, r := range s.requests {
		var ks []string
		for _, m := range r {
			ks = append(ks, m.Key)
		}
		out = append(out, ks)
	}
	return out
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not after 5s: %s", what)
		}
	}
}

// sendWelcome sends a welcome for n in the background; its error goes to errs.
func sendWelcome(ctx context.Context, m Mailer, n int, errs chan<- error) {
	go func() {
		err := m.Mail(ctx, fmt.Sprint("e", n), "welcome", Customer{Name: "Ada", Email: fmt.Sprintf("c%d@example.com", n)}, "Welcome!")
		if err != nil {
			err = fmt.Errorf("mail %d: %w", n, err)
		}
		errs <- err
	}()
}

func TestMailsThatComeWhileTwoRequestsAreInFlightGoInTheNextTogether(t *testing.T) {
	s := newMsgStub(t)
	m := newMailer(nil, s.Client(), s.URL+"/")
	errs := make(chan error, 8)
	for n := range 2 {
		sendWelcome(t.Context(), m, n, errs)
		eventually(t, "a request each", func() bool { return len(s.keys()) == n+1 })
	}
	for n := 2; n < 8; n++ {
		sendWelcome(t.Context(), m, n, errs)
		eventually(t, "the mail waiting", func() bool { w, _ := m.sends.Waiting(); return w == n-1 })
	}
	s.release()
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := [][]string{{"e0:welcome"}, {"e1:welcome"}, {"e2:welcome", "e3:welcome", "e4:welcome", "e5:welcome", "e6:welcome", "e7:welcome"}}
	if got := s.keys(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("requests %v, want %v", got, want)
	}
}

// callsOf are calls of a run, one per mail.
func callsOf(ctx context.Context, mails ...Mail) []*groupcommit.Call[Mail, struct{}] {
	calls := make([]*groupcommit.Call[Mail, struct{}], len(mails))
	for i, m := range mails {
		calls[i] = &groupcommit.Call[Mail, struct{}]{Ctx: ctx, In: m, Err: groupcommit.ErrNoAnswer}
	}
	return calls
}

func TestAMailMsgCouldNotRecordFailsAloneAndAFailedRequestFailsAll(t *testing.T) {
	s := newMsgStub(t)
	s.release()
	s.answer = func(w http.ResponseWriter, mails []Mail) {
		answers := make([]MailAnswer, len(mails))
		for i, m := range mails {
			answers[i] = MailAnswer{ID: EmailID(m.Key), Sent: true}
			if m.To == "c1@example.com" {
				answers[i] = MailAnswer{Error: "c1 holds a list"}
			}
		}
		platform.WriteJSON(w, http.StatusOK, answers)
	}
	mails := []Mail{{To: "c0@example.com", Key: "e0:welcome"}, {To: "c1@example.com", Key: "e1:welcome"}, {To: "c2@example.com", Key: "e2:welcome"}}
	calls := callsOf(t.Context(), mails...)
	sendMails(t.Context(), s.Client(), s.URL+"/emails", calls)
	if calls[0].Err != nil || calls[2].Err != nil || !errors.Is(calls[1].Err, platform.ErrUnavailable) {
		t.Fatalf("errors %v, %v, %v; want one for c1 alone, ErrUnavailable", calls[0].Err, calls[1].Err, calls[2].Err)
	}
	for name, answer := range map[string]func(http.ResponseWriter, []Mail){
		"503":         func(w http.ResponseWriter, _ []Mail) { platform.WriteJSON(w, 503, map[string]string{"error": "down"}) },
		"fewer":       func(w http.ResponseWriter, _ []Mail) { platform.WriteJSON(w, 200, []MailAnswer{{ID: "x", Sent: true}}) },
		"not answers": func(w http.ResponseWriter, _ []Mail) { platform.WriteJSON(w, 200, map[string]string{"id": "x"}) },
	} {
		s.answer = answer
		calls := callsOf(t.Context(), mails[0], mails[2])
		sendMails(t.Context(), s.Client(), s.URL+"/emails", calls)
		for _, c := range calls {
			if c.Err == nil {
				t.Errorf("%s: mail %s did not fail", name, c.In.Key)
			}
		}
	}
}

func TestAMailMsgWouldRefuseIsRefusedBeforeItGoes(t *testing.T) {
	s := newMsgStub(t)
	s.release()
	m := newMailer(nil, s.Client(), s.URL)
	for name, to := range map[string]string{"no address": "", "not an address": "ada", "too long": strings.Repeat("a", MaxEmail) + "@example.com"} {
		if err := m.Mail(t.Context(), "e1", "welcome", Customer{Email: to}, "Welcome!"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := m.Mail(t.Context(), "e1", "welcome", Customer{Email: "ada@example.com"}, " "); err == nil {
		t.Error("an empty text: no error")
	}
	if got := s.keys(); len(got) != 0 {
		t.Fatalf("msg got %v", got)
	}
}

func TestEachMailCarriesItsOwnTrace(t *testing.T) {
	s := newMsgStub(t)
	m := newMailer(nil, s.Client(), s.URL)
	errs := make(chan error, 3)
	traces := []string{"00-11111111111111111111111111111111-1111111111111111-01",
		"00-22222222222222222222222222222222-2222222222222222-01", "00-33333333333333333333333333333333-3333333333333333-01"}
	sendWelcome(platform.WithTrace(t.Context(), traces[0]), m, 0, errs)
	eventually(t, "one request", func() bool { return len(s.keys()) == 1 })
	sendWelcome(platform.WithTrace(t.Context(), traces[1]), m, 1, errs)
	eventually(t, "two requests", func() bool { return len(s.keys()) == 2 })
	sendWelcome(platform.WithTrace(t.Context(), traces[2]), m, 2, errs)
	eventually(t, "a mail waiting", func() bool { w, _ := m.sends.Waiting(); return w == 1 })
	sendWelcome(t.Context(), m, 3, errs)
	eventually(t, "two mails waiting", func() bool { w, _ := m.sends.Waiting(); return w == 2 })
	s.release()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var got []string
	for _, r := range s.requests {
		for _, m := range r {
			got = append(got, m.TraceParent)
		}
	}
	if want := append(traces, ""); !slices.Equal(got, want) {
		t.Fatalf("traceparents %q, want %q", got, want)
	}
}
