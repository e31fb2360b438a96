package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
)

// Redis restarted (AOF on): the services become unready while it is away,
// neither crash nor need a restart, are ready again once it is back, lose
// nothing written before, and go on: new customers get their welcomes.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	g := s.Gateway
	old, oldEmails := g.Customers(t, "before", 20)
	g.WaitMails(t, 30*time.Second, "Welcome", oldEmails)
	started := map[string]time.Time{}
	for _, name := range services {
		started[name] = s.inspect(name).State.StartedAt
	}

	down := time.Now()
	s.Stop("redis")
	s.waitFor(30*time.Second, 100*time.Millisecond, "every service unready while Redis is down", func() bool {
		for name, ready := range s.readiness(services...) {
			if !s.inspect(name).State.Running {
				t.Fatalf("%s exited while Redis was down", name)
			}
			if ready {
				return false
			}
		}
		return true
	})
	t.Logf("every service unready %v after Redis was stopped", time.Since(down).Round(time.Millisecond))
	// Down long enough for the consumers to lose their sessions, not just
	// retry a command: their reconnection is what is tested. A session ends
	// once its command has failed each of its tries, each a dial whose name
	// lookup Docker's DNS may take seconds to fail (CI: crm's first failed
	// 35 s after the stop, on a busy box).
	for _, name := range []string{"crm", "billing"} {
		s.waitFor(2*time.Minute, 200*time.Millisecond, name+"'s consumer interrupted", func() bool {
			return strings.Contains(s.logs(name, down), "consumer interrupted")
		})
	}
	t.Logf("the consumers were interrupted %v after Redis was stopped", time.Since(down).Round(time.Millisecond))
	status, body := platformtest.Do(t, "POST", string(g)+"/customer", map[string]string{"name": "N", "email": "n@example.com"})
	if status != http.StatusServiceUnavailable || !isJSONError(string(body)) {
		t.Fatalf("a command while Redis is down answered %d %s, want a 503 JSON error", status, body)
	}

	up := time.Now()
	s.Start("redis")
	s.waitReady(services...)
	t.Logf("every service ready again %v after Redis was started", time.Since(up).Round(time.Millisecond))
	for _, name := range services {
		c := s.inspect(name)
		if !c.State.Running || !c.State.StartedAt.Equal(started[name]) || c.RestartCount != 0 {
			t.Fatalf("%s was restarted: started %v, before %v, %d restarts", name, c.State.StartedAt, started[name], c.RestartCount)
		}
	}

	for i, id := range old {
		if c := g.Get(t, "/customers/"+id); c["email"] != oldEmails[i] {
			t.Fatalf("customer %s after the restart: %v, want email %s", id, c, oldEmails[i])
		}
	}
	if n := len(g.List(t, "/customers")); n != 20 {
		t.Fatalf("%d customers after the restart, want 20", n)
	}
	_, newEmails := g.Customers(t, "after", 20)
	s.settled(s.Admin+"/ops/crm/stats", 60*time.Second)
	expectMails(t, g, "Welcome", append(oldEmails, newEmails...))
	if st := consumerStats(t, s.Admin+"/ops/crm/stats"); st.Counters.Reconnections == 0 {
		t.Fatalf("CRM's consumer reports no reconnection: %+v", st.Counters)
	}
}
