package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
)

// deadLetter is a dead letter as GET /ops/crm/deadletters lists it.
type deadLetter struct {
	Stream     string         `json:"stream"`
	ID         string         `json:"id"`
	StreamID   string         `json:"stream_id"`
	Error      string         `json:"error"`
	Deliveries int64          `json:"deliveries"`
	Entry      map[string]any `json:"entry"`
}

func (s *stack) deadLetters() []deadLetter {
	s.t.Helper()
	var out []deadLetter
	platformtest.JSON(s.t, "GET", s.Admin+"/ops/crm/deadletters", nil, 200, &out)
	return out
}

// deadLetter is the dead letter for which match holds, nil if none.
func (s *stack) deadLetter(match func(deadLetter) bool) *deadLetter {
	s.t.Helper()
	for _, d := range s.deadLetters() {
		if match(d) {
			return &d
		}
	}
	return nil
}

func (s *stack) replay(d *deadLetter) (int, string) {
	s.t.Helper()
	status, body := platformtest.Do(s.t, "POST", s.Admin+"/ops/crm/deadletters/"+d.Stream+"/"+d.ID+"/replay", nil)
	return status, string(body)
}

// An event CRM cannot handle is dead-lettered after MAX_DELIVERIES, CRM goes
// on with the next ones, and replaying it fails while its cause remains. An
// event that failed because msg was down is replayed once msg is back.
func TestPoisonEventIsDeadLetteredAndReplayed(t *testing.T) {
	t.Parallel()
	s := newStack(t, withEnv("crm", "MAX_DELIVERIES=3", "CLAIM_IDLE=1s"))
	s.NoVerify("its poison event is in the stream by hand, never in the cache")
	g := s.Gateway
	ctx := context.Background()

	poison, err := s.Redis().XAdd(ctx, &redis.XAddArgs{Stream: "events:{customer}", Values: []any{
		"event_id", uuid.NewString(), "type", "customer_created", "entity_type", "customer",
		"entity_id", uuid.NewString(), "version", "1", "time", time.Now().UTC().Format(time.RFC3339Nano),
		"entity", "{not json",
	}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	isPoison := func(d deadLetter) bool { return d.StreamID == poison }
	var dl *deadLetter
	s.waitFor(30*time.Second, 100*time.Millisecond, "the poison event dead-lettered", func() bool {
		dl = s.deadLetter(isPoison)
		return dl != nil
	})
	if dl.Stream != "customer" || dl.Deliveries < 3 || dl.Error == "" || dl.Entry["entity"] != "{not json" {
		t.Fatalf("dead letter %+v, want the poison entry of stream customer after 3 deliveries, with its error", *dl)
	}
	raw, err := s.Redis().XRange(ctx, "events:{customer}:dead:crm", "-", "+").Result()
	if err != nil || len(raw) != 1 || raw[0].ID != dl.ID || raw[0].Values["dl.stream_id"] != poison {
		t.Fatalf("events:{customer}:dead:crm holds %v (%v), want the poison entry only", raw, err)
	}
	st := consumerStats(t, s.Admin+"/ops/crm/stats")
	if n := groupOf(st, "events:{customer}").DeadLetters; n != 1 || st.Counters.DeadLettered != 1 {
		t.Fatalf("stats: %d dead letters on events:{customer}, %d dead-lettered, want 1 and 1", n, st.Counters.DeadLettered)
	}

	// CRM goes on.
	_, emails := g.Customers(t, "after-poison", 5)
	g.WaitMails(t, 30*time.Second, "Welcome", emails)

	// The poison cannot be replayed: an error, and it stays.
	status, body := s.replay(dl)
	if status != http.StatusConflict || !isJSONError(body) {
		t.Fatalf("replaying the poison answered %d %s, want a 409 JSON error", status, body)
	}
	if s.deadLetter(isPoison) == nil {
		t.Fatal("the poison left the dead letters after a failed replay")
	}

	// Replay after the cause is fixed: msg down makes a welcome fail until it
	// is dead; msg back, its replay mails it and removes the dead letter.
	s.Stop("msg")
	ids, late := g.Customers(t, "msg-down", 1)
	isLate := func(d deadLetter) bool { return d.Entry["entity_id"] == ids[0] }
	s.waitFor(30*time.Second, 100*time.Millisecond, "the welcome of "+ids[0]+" dead-lettered", func() bool {
		dl = s.deadLetter(isLate)
		return dl != nil
	})
	s.Start("msg")
	if n := g.CountMails(t, "Welcome"); n[late[0]] != 0 {
		t.Fatalf("%s got a welcome before the replay", late[0])
	}
	if status, body := s.replay(dl); status != http.StatusOK || strings.TrimSpace(body) != "true" {
		t.Fatalf("replay after msg came back: %d %s, want 200 true", status, body)
	}
	g.WaitMails(t, 30*time.Second, "Welcome", late)
	if s.deadLetter(isLate) != nil {
		t.Fatal("the replayed dead letter is still listed")
	}
	if s.deadLetter(isPoison) == nil {
		t.Fatal("the poison is gone from the dead letters")
	}
	st = consumerStats(t, s.Admin+"/ops/crm/stats")
	if n := groupOf(st, "events:{customer}").DeadLetters; n != 1 || st.Counters.Replayed != 1 {
		t.Fatalf("stats: %d dead letters, %d replayed, want 1 and 1", n, st.Counters.Replayed)
	}
}
