package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
