package smoke

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/tests/scenario"
)

// The cluster variant (docker-compose.cluster.yml): redis-init joins the three
// nodes into a cluster of three masters and the services run on it with four
// stream partitions. The original scenario passes; CRM is stopped while
// customers and orders are created, and one Redis node is restarted at
// another address meanwhile: it comes back with its keys (AOF) and its place
// in the cluster (nodes.conf), CRM catches up, every mail goes out once, and
// -verify finds the cache and the invariants whole. redis-init run again
// leaves the cluster as it is.
func TestClusterVariantRunsTheShopThroughANodeRestart(t *testing.T) {
	eachCompose(t, "cluster", stack{files: []string{"docker-compose.cluster.yml"}}, func(t *testing.T, s stack) {
		start := time.Now()
		s.run(t, "up", "-d", "--no-build")
		if ids := s.containers(t, "redis"); len(ids) != 0 {
			t.Fatalf("the single redis runs in the cluster variant: %v", ids)
		}
		s.waitExited(t, "redis-init")
		s.waitHealthy(t, 13) // three nodes, PostgreSQL, nine services
		t.Logf("stack healthy %v after up", time.Since(start).Round(time.Second))
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

		g := scenario.Gateway("http://127.0.0.1:" + envOr("GATEWAY_PORT", "5000"))
		scenario.Original(t, g)
		for _, node := range []string{"redis-1", "redis-2", "redis-3"} {
			if n := cli(node, "--scan", "--pattern", "events:{*"); n == "" {
				t.Errorf("%s holds no stream: the partitions do not spread", node)
			}
		}

		s.run(t, "stop", "crm")
		customers, emails := g.Customers(t, "cluster", 20)
		product := g.Create(t, "/product", map[string]any{"name": "Tea", "price": 3})[0]
		g.Create(t, "/inventory", map[string]any{"product_id": product, "amount": 1000})
		var orders []map[string]any
		for _, c := range customers {
			orders = append(orders, map[string]any{"customer_id": c, "product_ids": []string{product}})
		}
		g.Create(t, "/orders", orders)
		// The keys redis-2 holds for good, counted with nothing writing: billing and
		// inventory still follow the orders above, and markers with a TTL expire.
		writers := []string{"gateway", "customer", "product", "inventory", "order", "billing", "msg", "archive"}
		s.run(t, append([]string{"stop"}, writers...)...)
		lasting := func() string {
			t.Helper()
			info := cli("redis-2", "info", "keyspace") // db0:keys=183,expires=12,avg_ttl=…
			var keys, expires int
			if i := strings.Index(info, "db0:"); i >= 0 {
				fmt.Sscanf(info[i:], "db0:keys=%d,expires=%d", &keys, &expires)
			}
			return fmt.Sprint(keys - expires)
		}
		before := lasting()

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
		s.checkCluster(t, cli)
		if nodes := cli("redis-1", "cluster", "nodes"); !strings.Contains(nodes, now+":6379@16379,redis-2 master") {
			t.Errorf("redis-1 does not know redis-2 at %s:\n%s", now, nodes)
		}
		if after := lasting(); after != before {
			t.Errorf("redis-2 held %s keys without a TTL, %s after its restart", before, after)
		}
		s.run(t, append([]string{"start"}, writers...)...)
		redistest.Eventually(t, 2*time.Minute, "the gateway ready again", func() bool {
			resp, err := http.Get("http://127.0.0.1:" + envOr("GATEWAY_ADMIN_PORT", "9000") + "/readyz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == http.StatusOK
		})

		s.run(t, "start", "crm")
		g.WaitMails(t, 2*time.Minute, "Welcome", emails)
		g.WaitMails(t, 2*time.Minute, "Thank you for your order", emails)
		if n := len(g.List(t, "/orders")); n != 20+9 { // the scenario leaves 9
			t.Errorf("%d orders, want 29", n)
		}
		s.verify(t)

		// Once more, as after a restart of the whole variant: nothing to do.
		out := s.run(t, "run", "--rm", "--no-deps", "redis-init")
		if strings.Contains(out, "slots allocation") || !strings.Contains(out, "cluster ok") {
			t.Errorf("redis-init on a formed cluster:\n%s", out)
		}
		s.checkCluster(t, cli)
	})
}

// verify stops the services and runs the gateway's binary once with -verify
// as ops, on the cluster: the cache equals the streams' projection and the
// shop's invariants hold.
func (s stack) verify(t *testing.T) {
	t.Helper()
	s.run(t, "stop", "customer", "product", "inventory", "order", "billing", "crm", "msg", "archive")
	out := s.run(t, "run", "--rm", "--no-deps", "-e", "REDIS_URL=redis://ops:"+password("ops")+"@redis-1:6379?addr=redis-2:6379&addr=redis-3:6379",
		"gateway", "-verify")
	if !strings.Contains(out, "ok: the cache of") {
		t.Errorf("gateway -verify:\n%s", out)
	}
}

// password is the test's Redis password of a user.
func password(user string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "REDIS_PASSWORD_"+strings.ToUpper(user)+"="); ok {
			return v
		}
	}
	return ""
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
