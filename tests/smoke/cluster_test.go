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

// clusterNodes are the Redis nodes of docker-compose.cluster.yml: redis-init
// makes the first three the masters, the others their replicas.
var clusterNodes = []string{"redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6"}

// The cluster variant (docker-compose.cluster.yml): redis-init joins the six
// nodes into a cluster of three masters, redis-1..3, each with one replica in
// sync, and the services run on it with four stream partitions and
// REDIS_MIN_REPLICAS 1. The original scenario passes; CRM is stopped while
// customers and orders are created, and the master redis-2 is stopped
// meanwhile, for longer than the node timeout: its replica takes its place,
// and redis-2 comes back at another address as that one's replica, with its
// place in the cluster (nodes.conf) and the keys it held. The cluster is
// whole again (six nodes, three masters each with a replica in sync), the
// services find the new master, CRM catches up, every mail goes out once, and
// -verify finds the cache and the invariants whole. redis-init run again
// leaves the cluster as it is. With a second compose program (COMPOSE_V2)
// the scenario and -verify only.
func TestClusterVariantRunsTheShopThroughANodeRestart(t *testing.T) {
	eachCompose(t, "cluster", stack{files: []string{"docker-compose.cluster.yml"}}, func(t *testing.T, s stack) {
		start := time.Now()
		s.run(t, "up", "-d", "--no-build")
		if ids := s.containers(t, "redis"); len(ids) != 0 {
			t.Fatalf("the single redis runs in the cluster variant: %v", ids)
		}
		s.waitExited(t, "redis-init")
		s.waitHealthy(t, 16) // six nodes, PostgreSQL, nine services
		t.Logf("stack healthy %v after up", time.Since(start).Round(time.Second))
		cli := func(node string, args ...string) string { return s.redisCLI(t, node, args...) }
		s.checkCluster(t)
		for i, node := range clusterNodes {
			if role, want := s.role(t, node), map[bool]string{true: "master", false: "slave"}[i < 3]; role != want {
				t.Errorf("%s: role %s after redis-init, want %s", node, role, want)
			}
		}
		if slots := cli("redis-1", "cluster", "slots"); !strings.Contains(slots, "redis-2") || !strings.Contains(slots, "redis-6") {
			t.Errorf("CLUSTER SLOTS names no hostnames:\n%s", slots)
		}

		g := scenario.Gateway("http://127.0.0.1:" + envOr("GATEWAY_PORT", "5000"))
		scenario.Original(t, g)
		for _, node := range []string{"redis-1", "redis-2", "redis-3"} {
			if n := cli(node, "--scan", "--pattern", "events:{*"); n == "" {
				t.Errorf("%s holds no stream: the partitions do not spread", node)
			}
		}
		if !s.first {
			// The file works with this program too; the failover below is Redis's
			// and the services', the same with either (make cluster-faults runs
			// failovers with both).
			s.verify(t, clusterURL("ops"))
			return
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
		lasting := func(node string) string {
			t.Helper()
			info := cli(node, "info", "keyspace") // db0:keys=183,expires=12,avg_ttl=…
			var keys, expires int
			if i := strings.Index(info, "db0:"); i >= 0 {
				fmt.Sscanf(info[i:], "db0:keys=%d,expires=%d", &keys, &expires)
			}
			return fmt.Sprint(keys - expires)
		}
		before := lasting("redis-2")
		replica := s.replicaOf(t, "redis-2")

		// Down until its replica is promoted, then restarted at another address: a
		// container takes its old one meanwhile.
		ip := func() string {
			return docker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", s.containers(t, "redis-2")[0])
		}
		was := ip()
		s.run(t, "stop", "redis-2")
		hold := docker(t, "run", "-d", "--network", s.project+"_default", "--entrypoint", "busybox", redisImage(), "sleep", "600")
		t.Cleanup(func() { docker(t, "rm", "-f", hold) })
		s.waitPromoted(t, replica)
		s.run(t, "start", "redis-2")
		now := ip()
		if now == was {
			t.Fatalf("redis-2 came back at its old address %s", was)
		}
		s.checkCluster(t)
		if nodes := cli("redis-1", "cluster", "nodes"); !strings.Contains(nodes, now+":6379@16379,redis-2 slave") {
			t.Errorf("redis-1 does not know redis-2 at %s as a replica:\n%s", now, nodes)
		}
		if got := s.replicaOf(t, replica); got != "redis-2" {
			t.Errorf("the replica of %s, promoted: %q, want redis-2", replica, got)
		}
		for _, node := range []string{replica, "redis-2"} {
			if after := lasting(node); after != before {
				t.Errorf("redis-2 held %s keys without a TTL, %s %s after the failover", before, node, after)
			}
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
		s.verify(t, clusterURL("ops"))

		// Once more, as after a restart of the whole variant: nothing to do.
		out := s.run(t, "run", "--rm", "--no-deps", "redis-init")
		if strings.Contains(out, "slots allocation") || !strings.Contains(out, "cluster ok") {
			t.Errorf("redis-init on a formed cluster:\n%s", out)
		}
		s.checkCluster(t)
	})
}

// TestClusterFaults runs the cluster variant through a SIGKILL of a master
// that holds customer streams, amid TestHAFaults' workload, on a fresh stack
// each time: after the node timeout (5 s) the cluster promotes its replica,
// and the killed node, started again, follows that one. Every command
// answered 2xx holds, as TestHAFaults checks it: its customer or order
// exists once, under the id it was answered, its key answers that id again,
// the stock converges to what the acknowledged orders leave, -verify finds
// the streams whole, each customer got one welcome mail. HA_RUNS runs
// (make cluster-faults), seeds as TestHAFaults'.
func TestClusterFaults(t *testing.T) {
	runs, seed := faultRuns(t, "make cluster-faults")
	for run := range runs {
		seed := seed + uint64(run)
		t.Run(fmt.Sprintf("kill/seed-%d", seed), func(t *testing.T) {
			eachCompose(t, "cluster-kill", stack{files: []string{"docker-compose.cluster.yml"}}, func(t *testing.T, s stack) {
				underFault(t, s, seed, loadFault{
					variant: "cluster", name: "kill", tag: "cl",
					healthy: 16, // six nodes, PostgreSQL, nine services
					fault:   killMaster,
					settled: func(t *testing.T, s stack) { s.checkCluster(t) },
					verify:  func(t *testing.T, s stack) { s.verify(t, clusterURL("ops")) },
				})
			})
		})
	}
}

// killMaster kills (SIGKILL) the first master that holds a customer stream,
// waits until its replica is promoted, and starts it again.
func killMaster(t *testing.T, s stack, l *haLoad) {
	var master string
	for _, node := range clusterNodes {
		if s.role(t, node) == "master" && s.redisCLI(t, node, "--scan", "--pattern", "events:{customer*") != "" {
			master = node
			break
		}
	}
	if master == "" {
		t.Fatal("no master holds a customer stream")
	}
	replica := s.replicaOf(t, master)
	id := s.containers(t, master)[0]
	docker(t, "kill", "-s", "KILL", id)
	l.mark()
	t.Logf("%s killed, its replica %s", master, replica)
	s.waitPromoted(t, replica)
	// Docker does not restart a container that docker kill stopped: start it.
	docker(t, "start", id)
}

// clusterURL is the go-redis cluster URL of the variant for a Redis user.
func clusterURL(user string) string {
	url := "redis://" + user + ":" + password(user) + "@" + clusterNodes[0] + ":6379"
	for i, node := range clusterNodes[1:] {
		url += map[bool]string{true: "?", false: "&"}[i == 0] + "addr=" + node + ":6379"
	}
	return url
}

// role is the role of a node: master or slave ("" when it does not answer).
func (s stack) role(t *testing.T, node string) string {
	return strings.Fields(s.redisCLI(t, node, "role") + " ")[0]
}

// replicaOf is the hostname of the replica of a master ("" if none).
func (s stack) replicaOf(t *testing.T, master string) string {
	id := s.redisCLI(t, master, "cluster", "myid")
	// <id> <ip:port@cport,hostname> <flags> <master id> …
	for _, line := range strings.Split(s.redisCLI(t, master, "cluster", "nodes"), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[3] == id && strings.Contains(f[2], "slave") {
			_, host, _ := strings.Cut(f[1], ",")
			return host
		}
	}
	return ""
}

// waitPromoted waits until node is a master, and logs how long it took.
func (s stack) waitPromoted(t *testing.T, node string) {
	t.Helper()
	start := time.Now()
	redistest.Eventually(t, time.Minute, node+" promoted", func() bool { return s.role(t, node) == "master" })
	t.Logf("%s promoted %v after its master went", node, time.Since(start).Round(100*time.Millisecond))
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

// checkCluster waits until the cluster is whole: each of the six nodes
// says cluster_state:ok and knows the others, three masters cover every
// slot, each with one replica in sync (its link up, and the master counting
// it good for min-replicas-to-write), and redis-cli --cluster check finds
// nothing amiss.
func (s stack) checkCluster(t *testing.T) {
	t.Helper()
	var why string
	defer func() {
		if why != "" { // Eventually gave up
			t.Log(why)
		}
	}()
	redistest.Eventually(t, 2*time.Minute, "the cluster whole", func() bool {
		why = s.clusterAmiss(t)
		return why == ""
	})
}

// clusterAmiss is what is amiss with the cluster, "" if nothing.
func (s stack) clusterAmiss(t *testing.T) string {
	masters := 0
	for _, node := range clusterNodes {
		info := s.redisCLI(t, node, "cluster", "info")
		for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:6", "cluster_size:3"} {
			if !strings.Contains(info, want) {
				return fmt.Sprintf("%s: CLUSTER INFO without %s:\n%s", node, want, info)
			}
		}
		repl := s.redisCLI(t, node, "info", "replication")
		switch {
		case strings.Contains(repl, "role:master"):
			masters++
			if !strings.Contains(repl, "connected_slaves:1\r") && !strings.Contains(repl, "connected_slaves:1\n") ||
				!strings.Contains(repl, "min_slaves_good_slaves:1") {
				return fmt.Sprintf("%s: a master without one replica in sync:\n%s", node, repl)
			}
		case !strings.Contains(repl, "master_link_status:up"):
			return fmt.Sprintf("%s: a replica not in sync:\n%s", node, repl)
		}
	}
	if masters != 3 {
		return fmt.Sprintf("%d masters, want 3", masters)
	}
	check := s.redisCLI(t, "redis-1", "--cluster", "check", "redis-1:6379")
	if !strings.Contains(check, "[OK] All 16384 slots covered") || !strings.Contains(check, "[OK] All nodes agree about slots configuration") ||
		strings.Contains(check, "[ERR]") || strings.Contains(check, "[WARNING]") ||
		strings.Count(check, "M: ") != 3 || strings.Count(check, "S: ") != 3 || strings.Count(check, "1 additional replica(s)") != 3 {
		return "redis-cli --cluster check:\n" + check
	}
	return ""
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
