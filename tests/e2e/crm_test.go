package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// CRM stopped with SIGTERM misses nothing: once started, it mails one
// welcome per customer and one thank-you per order created while it was
// down, and nothing twice.
func TestStoppedCRMCatchesUp(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	g := s.Gateway
	s.Stop("crm")

	customers, emails := g.Customers(t, "catchup", 200)
	prods := products(t, g, 10, 1000)
	var orders []string
	for b := range 4 { // 100 orders, one each for the first 100 customers
		var batch []map[string]any
		for i := range 25 {
			batch = append(batch, map[string]any{"customer_id": customers[b*25+i], "product_ids": pick(prods, 3)})
		}
		orders = append(orders, g.Create(t, "/orders", batch)...)
	}
	if len(orders) != 100 {
		t.Fatalf("%d orders created, want 100", len(orders))
	}
	for _, prefix := range []string{"Welcome", "Thank you"} {
		if n := g.CountMails(t, prefix); len(n) != 0 {
			t.Fatalf("%d %q mails while CRM was down", len(n), prefix)
		}
	}

	s.Start("crm")
	// Settled, nothing is left to come: exactly one mail of each.
	s.settled(s.Admin+"/ops/crm/stats", 60*time.Second)
	expectMails(t, g, "Welcome", emails)
	expectMails(t, g, "Thank you", emails[:100])
	// One thank-you per order, which it names.
	thanked := map[string]int{}
	for _, m := range mails(t, g) {
		if strings.HasPrefix(m.Msg, "Thank you") {
			for _, id := range orders {
				if strings.Contains(m.Msg, id) {
					thanked[id]++
				}
			}
		}
	}
	for _, id := range orders {
		if thanked[id] != 1 {
			t.Errorf("order %s: %d thank-you mails, want 1", id, thanked[id])
		}
	}
}

// CRM killed with SIGKILL three times while it works through a burst of
// 1,000 new customers, restarted each time: every customer gets exactly one
// welcome, whatever the kills interrupted.
func TestKilledCRMLosesNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t, withEnv("crm", "CLAIM_IDLE=2s", "BATCH=20"))
	g := s.Gateway
	// The burst is created while CRM is down, so that it is consumed in one
	// go when CRM starts, and the kills land in the middle of it.
	s.Stop("crm")
	var emails []string
	for range 10 {
		_, e := g.Customers(t, "burst", 100)
		emails = append(emails, e...)
	}
	sent := func() int64 { return s.xlen("events:{email}") } // one event per mail msg sent

	s.Spawn("crm")
	var at []int64
	last := int64(0)
	deadline := time.Now().Add(90 * time.Second)
	// Up to three kills, each once CRM has sent 10 more; a CRM that ends the
	// burst before the third (it sends thousands a second, and a kill takes
	// a while on a busy box) has been killed in the middle of it at least
	// once, which is what the test needs.
kills:
	for len(at) < 3 {
		n := sent()
		switch {
		case n >= 1000 && len(at) > 0:
			t.Logf("the burst was done before kill %d", len(at)+1)
			break kills
		case n >= 1000:
			t.Fatalf("all 1000 welcomes were sent before the first kill: no burst left to kill CRM in")
		case n >= last+10: // working on it, with more to do
			s.Kill("crm")
			last = sent()
			at = append(at, last)
			s.Spawn("crm") // its own pending entries first, then the rest
		case time.Now().After(deadline):
			t.Fatalf("CRM made no progress: %d mails after kills at %v", n, at)
		default:
			time.Sleep(2 * time.Millisecond) // polling a counter in Redis
		}
	}
	t.Logf("CRM killed at %v mails of 1000", at)
	s.refresh("crm") // its port may have changed
	s.waitReady("crm")

	st := s.settled(s.Admin+"/ops/crm/stats", 90*time.Second)
	expectMails(t, g, "Welcome", emails)
	if n := sent(); n != 1000 {
		t.Fatalf("%d mails sent, want 1000", n)
	}
	t.Logf("the last CRM run recovered %d pending entries, handled %d events", st.Counters.Recovered, st.Counters.Succeeded)
}

// Two CRM replicas in the group "crm" share the customers' events: every
// customer gets exactly one welcome, and each replica handled a part.
func TestCRMReplicasShareTheWork(t *testing.T) {
	t.Parallel()
	s := newStack(t, withEnv("crm", "BATCH=10"), withReplica("crm-2", "crm", "BATCH=10"))
	g := s.Gateway
	var emails []string
	for range 10 {
		_, e := g.Customers(t, "replicas", 30)
		emails = append(emails, e...)
	}
	s.settled(s.AdminURL("crm")+"/ops/stats", 60*time.Second)
	expectMails(t, g, "Welcome", emails)

	one, two := consumerStats(t, s.AdminURL("crm")+"/ops/stats"), consumerStats(t, s.AdminURL("crm-2")+"/ops/stats")
	t.Logf("crm-1 handled %d events, crm-2 %d", one.Counters.Succeeded, two.Counters.Succeeded)
	if one.Consumer != "crm-1" || two.Consumer != "crm-2" {
		t.Fatalf("the replicas are consumers %q and %q, want crm-1 and crm-2", one.Consumer, two.Consumer)
	}
	if one.Counters.Succeeded == 0 || two.Counters.Succeeded == 0 {
		t.Fatalf("a replica did nothing: crm-1 %d events, crm-2 %d", one.Counters.Succeeded, two.Counters.Succeeded)
	}
	// Each event went to one replica only.
	if sum := one.Counters.Succeeded + two.Counters.Succeeded; sum != 300 {
		t.Fatalf("the replicas handled %d events together, want the 300 customer events once each", sum)
	}
	consumers, err := s.Redis().XInfoConsumers(context.Background(), "events:{customer}", "crm").Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range consumers {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if fmt.Sprint(names) != "[crm-1 crm-2]" {
		t.Fatalf("consumers of group crm: %v, want crm-1 and crm-2", names)
	}
}
