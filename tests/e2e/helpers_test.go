package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/ordershop/ordershop/tests/scenario"
)

// mail is a mail msg sent, as GET /emails lists it.
type mail struct {
	ID  string `json:"id"`
	Key string `json:"key"`
	To  string `json:"to"`
	Msg string `json:"msg"`
}

func mails(t testing.TB, g scenario.Gateway) []mail {
	t.Helper()
	var out []mail
	platformtest.JSON(t, "GET", string(g)+"/emails", nil, 200, &out)
	return out
}

// stats is what a consumer's GET /stats answers.
type stats = eventstore.ConsumerStats

// groupOf is the consumer's group on a stream ("events:{customer}").
func groupOf(st stats, stream string) eventstore.GroupInfo {
	for _, s := range st.Streams {
		if s.Stream == stream {
			for _, g := range s.Groups {
				if g.Name == st.Group {
					return g
				}
			}
		}
	}
	return eventstore.GroupInfo{Lag: -1}
}

// consumerStats reads a consumer's stats (crm's, billing's).
func consumerStats(t testing.TB, url string) stats {
	t.Helper()
	var st stats
	platformtest.JSON(t, "GET", url, nil, 200, &st)
	return st
}

// settled waits until the consumer behind a stats URL has nothing pending
// and no lag on any of its streams.
func (s *stack) settled(url string, within time.Duration) stats {
	s.t.Helper()
	var st stats
	s.waitFor(within, 100*time.Millisecond, "consumer settled (nothing pending, no lag): "+url, func() bool {
		st = consumerStats(s.t, url)
		for _, str := range st.Streams {
			if g := groupOf(st, str.Stream); str.Length > 0 && (g.Pending != 0 || g.Lag != 0) {
				return false
			}
		}
		return len(st.Streams) > 0
	})
	return st
}

// xlen is the length of a stream; a missing one has 0.
func (s *stack) xlen(key string) int64 {
	s.t.Helper()
	n, err := s.Redis().XLen(context.Background(), key).Result()
	if err != nil {
		s.t.Fatalf("XLEN %s: %v", key, err)
	}
	return n
}

// products creates n products with stock each and returns their ids.
func products(t testing.TB, g scenario.Gateway, n, stock int) []string {
	t.Helper()
	var body, inv []map[string]any
	for i := range n {
		body = append(body, map[string]any{"name": fmt.Sprintf("Product %d", i), "price": 100 + i})
	}
	ids := g.Create(t, "/products", body)
	for _, id := range ids {
		inv = append(inv, map[string]any{"product_id": id, "amount": stock})
	}
	g.Create(t, "/inventory", inv)
	return ids
}

// pick is 1 to max random ids of ids.
func pick(ids []string, max int) []string {
	var out []string
	for range 1 + rand.IntN(max) {
		out = append(out, ids[rand.IntN(len(ids))])
	}
	return out
}

// expectMails checks that each address got exactly one mail starting with
// prefix, and no other address got one (CountMails fails on a key sent twice).
func expectMails(t testing.TB, g scenario.Gateway, prefix string, to []string) {
	t.Helper()
	n := g.CountMails(t, prefix)
	none, twice, want := 0, 0, map[string]bool{}
	for _, addr := range to {
		want[addr] = true
		switch {
		case n[addr] == 0:
			none++
		case n[addr] > 1:
			twice++
		}
	}
	others := 0
	for addr := range n {
		if !want[addr] {
			others++
		}
	}
	if none+twice+others > 0 {
		t.Fatalf("%q mails: of %d addresses %d got none and %d more than one; %d other addresses got one",
			prefix, len(to), none, twice, others)
	}
}

// isJSONError says whether body is {"error": "<something>"}.
func isJSONError(body string) bool {
	var e struct{ Error string }
	return json.Unmarshal([]byte(body), &e) == nil && e.Error != ""
}
