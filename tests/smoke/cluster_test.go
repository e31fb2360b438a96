package smoke

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
)

// The cluster variant (docker-compose.cluster.yml): redis-init joins the three
// nodes into a cluster of three masters; a node restarted comes back with its
// keys (AOF) and its place in the cluster (nodes.conf), also at another
// address, and redis-init run
// again leaves the cluster as it is. The clients are sent to the nodes by
// their service names, not by IPs that change.
//
// The services are not started here: that waits for their REDIS_CLUSTER
// support; then this test brings up the whole variant and walks the original
// scenario as TestComposeStackRunsTheOriginalScenario does.
func TestClusterVariantFormsAClusterThatSurvivesANodeRestart(t *testing.T) {
	eachCompose(t, "cluster", stack{files: []string{"docker-compose.cluster.yml"}}, func(t *testing.T, s stack) {
		start := time.Now()
		s.run(t, "up", "-d", "--no-build", "redis-init")
		if ids := s.containers(t, "redis"); len(ids) != 0 {
			t.Fatalf("the single redis runs in the cluster variant: %v", ids)
		}
		s.waitExited(t, "redis-init")
		t.Logf("cluster formed %v after up", time.Since(start).Round(time.Second))
		cli := func(node string, args ...string) string {
			t.Helper()
			ids := s.containers(t, node)
			if len(ids) != 1 {
				t.Fatalf("%s: containers %v", node, ids)
			}
			return docker(t, append([]string{"exec", ids[0], "redis-cli", "--user", "ops"}, args...)...)
		}
		s.checkCluster(t, cli)
		if slots := cli("redis-1", "cluster", "slots"); !strings.Contains(slots, "redis-2") || !strings.Contains(slots, "redis-3") {
			t.Errorf("CLUSTER SLOTS names no hostnames:\n%s", slots)
		}

		// 30 keys over the slots: with three masters redis-2 holds some.
		for i := range 30 {
			if out := cli("redis-1", "-c", "set", fmt.Sprintf("{smoke%d}:key", i), "v"); !strings.Contains(out, "OK") {
				t.Fatalf("SET: %s", out)
			}
		}
		before := cli("redis-2", "dbsize")
		if before == "0" {
			t.Fatal("redis-2 holds no key")
		}
		// Restarted at another address: a container takes its old one meanwhile.
		ip := func() string {
			return docker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", s.containers(t, "redis-2")[0])
		}
		was := ip()
		s.run(t, "stop", "redis-2")
		hold := docker(t, "run", "-d", "--network", s.project+"_default", "--entrypoint", "busybox", redisImage(), "sleep", "600")
		t.Cleanup(func() { docker(t, "rm", "-f", hold) })
		s.run(t, "start", "redis-2")
		now := ip()
		if now == was {
			t.Fatalf("redis-2 came back at its old address %s", was)
		}
		redistest.Eventually(t, time.Minute, "redis-2 healthy again", func() bool {
			return docker(t, "inspect", "-f", "{{.State.Health.Status}}", s.containers(t, "redis-2")[0]) == "healthy"
		})
		s.checkCluster(t, cli)
		if nodes := cli("redis-1", "cluster", "nodes"); !strings.Contains(nodes, now+":6379@16379,redis-2 master") {
			t.Errorf("redis-1 does not know redis-2 at %s:\n%s", now, nodes)
		}
		if after := cli("redis-2", "dbsize"); after != before {
			t.Errorf("redis-2 held %s keys, %s after its restart", before, after)
		}
		for i := range 30 {
			if out := cli("redis-3", "-c", "get", fmt.Sprintf("{smoke%d}:key", i)); out != "v" {
				t.Fatalf("GET {smoke%d}:key after the restart: %q", i, out)
			}
		}

		// Once more, as after a restart of the whole variant: nothing to do.
		out := s.run(t, "run", "--rm", "--no-deps", "redis-init")
		if strings.Contains(out, "slots allocation") || !strings.Contains(out, "cluster ok") {
			t.Errorf("redis-init on a formed cluster:\n%s", out)
		}
		s.checkCluster(t, cli)
	})
}

// checkCluster waits until every node says cluster_state:ok, and checks that
// the cluster has three masters that cover every slot.
func (s stack) checkCluster(t *testing.T, cli func(node string, args ...string) string) {
	t.Helper()
	for _, node := range []string{"redis-1", "redis-2", "redis-3"} {
		var info string
		redistest.Eventually(t, 30*time.Second, node+": cluster_state:ok", func() bool {
			info = cli(node, "cluster", "info")
			return strings.Contains(info, "cluster_state:ok")
		})
		for _, want := range []string{"cluster_slots_assigned:16384", "cluster_known_nodes:3", "cluster_size:3"} {
			if !strings.Contains(info, want) {
				t.Errorf("%s: CLUSTER INFO without %s:\n%s", node, want, info)
			}
		}
	}
	check := cli("redis-1", "--cluster", "check", "redis-1:6379")
	if !strings.Contains(check, "[OK] All 16384 slots covered") || strings.Count(check, "M: ") != 3 {
		t.Errorf("redis-cli --cluster check:\n%s", check)
	}
}

// waitExited waits until the service's one container has exited with 0.
func (s stack) waitExited(t *testing.T, service string) {
	t.Helper()
	var state string
	redistest.Eventually(t, 2*time.Minute, service+" exited", func() bool {
		ids := strings.Fields(docker(t, "ps", "-aq", "--filter", s.label(), "--filter", "label=com.docker.compose.service="+service))
		if len(ids) != 1 {
			return false
		}
		state = docker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", ids[0])
		return strings.HasPrefix(state, "exited")
	})
	if state != "exited 0" {
		t.Fatalf("%s: %s\n%s", service, state, s.run(t, "logs", service))
	}
}

// redisImage is the Redis image the tests run (env, else local.env's).
func redisImage() string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "REDIS_IMAGE="); ok {
			return v
		}
	}
	return "ordershop/redis:local"
}
