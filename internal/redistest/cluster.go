package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startCluster starts three redis-servers with cluster mode on free loopback
// ports and joins them as a cluster of three masters, each serving a third of
// the hash slots. Its URL is the go-redis cluster URL of the three.
func startCluster() (string, func(), error) {
	dir, err := os.MkdirTemp("", "redistest-cluster")
	if err != nil {
		return "", func() {}, err
	}
	var nodes []*Server
	stop := func() {
		for _, n := range nodes {
			n.kill()
		}
		os.RemoveAll(dir)
	}
	fail := func(err error) (string, func(), error) {
		stop()
		return "", func() {}, err
	}
	var addrs []string
	for i := range 3 {
		port, err := clusterPort()
		if err != nil {
			return fail(err)
		}
		nodeDir := fmt.Sprintf("%s/%d", dir, i)
		if err := os.Mkdir(nodeDir, 0o755); err != nil {
			return fail(err)
		}
		n, err := startOn(nodeDir, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), false,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr)
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("redis-cli --cluster create: %w: %s", err, out))
	}
	if err := waitClusterOK(addrs); err != nil {
		return fail(err)
	}
	return "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2], stop, nil
}

// clusterPort is a free port whose cluster bus port, 10000 above, is free too.
func clusterPort() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port pair for a cluster node")
}

// waitClusterOK waits until every node sees the cluster as ok and the
// others as its masters.
func waitClusterOK(addrs []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := rdb.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				rdb.Close()
				return fmt.Errorf("cluster not ok at %s within 30s: %v %s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond) // polling nodes that are joining
		}
		rdb.Close()
	}
	return nil
}

// NewCluster starts a cluster of three masters of the test's own, as the
// shared one with REDISTEST_CLUSTER=1, for a test that changes its slots,
// and returns a client of it.
func NewCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		need(t, fmt.Errorf("a cluster of its own needs redis-server: %w", err))
	}
	url, stop, err := startCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	opt, err := redis.ParseClusterURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.Protocol = 2
	rdb := redis.NewClusterClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// MoveSlot moves slot, with its keys, from the master from to the master
// to as redis-cli --cluster reshard does: the slot is importing on to and
// migrating on from, its keys are migrated, and the two are left that way,
// each key on to, until the returned func gives the slot to to on every
// master of cluster. Meanwhile from answers ASK for the slot's keys.
func MoveSlot(t testing.TB, cluster *redis.ClusterClient, from, to *redis.Client, slot int) (assign func()) {
	t.Helper()
	ctx := context.Background()
	id := func(rdb *redis.Client) string {
		id, err := rdb.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	fromID, toID := id(from), id(to)
	host, port, _ := net.SplitHostPort(to.Options().Addr)
	for _, c := range []*redis.Cmd{
		to.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID),
		from.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID),
	} {
		if c.Err() != nil {
			t.Fatal(c.Err())
		}
	}
	for {
		keys, err := from.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := from.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("MIGRATE: %v", err)
		}
	}
	return func() {
		t.Helper()
		// to first, as redis-cli does: it takes the slot for good before from
		// gives it up.
		if err := to.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err(); err != nil {
			t.Fatal(err)
		}
		err := cluster.ForEachMaster(ctx, func(ctx context.Context, rdb *redis.Client) error {
			return rdb.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
