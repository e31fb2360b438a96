package redistest

import (
	"testing"
	"time"
)

// The Sentinels promote the replica once the primary is killed.
func TestSentinelsPromoteTheReplica(t *testing.T) {
	t.Parallel()
	ss := NewSentinels(t)
	if got := ss.PrimaryAddr(t); got != ss.Primary.Addr {
		t.Fatalf("the Sentinels announce %s, want the primary %s", got, ss.Primary.Addr)
	}
	ss.Primary.Kill()
	Eventually(t, 30*time.Second, "the replica is promoted", func() bool { return ss.PrimaryAddr(t) == ss.Replica.Addr })
}
