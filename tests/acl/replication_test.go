package acl_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/redistest"
)

// A replica follows its primary as the user replica, and a Sentinel watches
// both and promotes the replica as the user sentinel, as in
// docker-compose.ha.yml; neither user reads or writes a key.
func TestAReplicaAndASentinelWorkAsTheirUsers(t *testing.T) {
	t.Parallel()
	passwords := newPasswords()
	primary := startWith(t, passwords)
	host, port, _ := net.SplitHostPort(primary.addr)
	replica := startWith(t, passwords, "--replicaof", host, port, "--masteruser", "replica", "--masterauth", passwords["replica"])
	ctx := context.Background()
	allowed(t, primary.client(t, "ops").Set(ctx, "k", "v", 0).Err(), "ops SET")
	onReplica := replica.client(t, "ops")
	redistest.Eventually(t, 30*time.Second, "the replica has the primary's key", func() bool {
		return onReplica.Get(ctx, "k").Val() == "v"
	})
	for _, user := range replication {
		refused(t, primary.client(t, user).Get(ctx, "k").Err(), user+" GET")
		refused(t, primary.client(t, user).Set(ctx, "k", "w", 0).Err(), user+" SET")
	}

	sentinel := redis.NewSentinelClient(&redis.Options{MaxRetries: -1,
		Addr: redistest.StartSentinel(t, "ordershop", primary.addr, 1, "auth-user ordershop sentinel", "auth-pass ordershop "+passwords["sentinel"])})
	t.Cleanup(func() { sentinel.Close() })
	// A replica the Sentinel last saw before it synced is no candidate
	// (SENTINEL FAILOVER answers NOGOODSLAVE): wait for its link to be up.
	redistest.Eventually(t, 60*time.Second, "the Sentinel sees the primary and its replica linked", func() bool {
		m, err := sentinel.Master(ctx, "ordershop").Result()
		replicas, _ := sentinel.Replicas(ctx, "ordershop").Result()
		return err == nil && m["flags"] == "master" && len(replicas) == 1 && replicas[0]["flags"] == "slave" &&
			replicas[0]["master-link-status"] == "ok" && replicas[0]["master-link-down-time"] == "0"
	})
	allowed(t, sentinel.Failover(ctx, "ordershop").Err(), "SENTINEL FAILOVER")
	role := func(s *server) string {
		r, _ := s.client(t, "ops").Do(ctx, "ROLE").Slice()
		if len(r) == 0 {
			return ""
		}
		return fmt.Sprint(r[0])
	}
	redistest.Eventually(t, 60*time.Second, "the replica promoted and the primary following it", func() bool {
		return role(replica) == "master" && role(primary) == "slave"
	})
}
