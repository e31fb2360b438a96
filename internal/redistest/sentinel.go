package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinels is a primary, one replica of it, and three Sentinels that watch
// the primary under the name Master with a quorum of two, each a
// redis-server of one test's own on a free loopback port. The Sentinels see
// the primary down half a second after it stops answering
// (down-after-milliseconds 500) and then promote the replica
// (failover-timeout 2000).
type Sentinels struct {
	Master           string   // the name the Sentinels know the primary by
	Addrs            []string // the Sentinels' host:port
	Primary, Replica *Server
}

// NewSentinels starts the primary, the replica and the Sentinels, and
// returns once the replica follows the primary and every Sentinel knows the
// replica and the two other Sentinels; all are stopped when the test ends.
func NewSentinels(t testing.TB) *Sentinels {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	need(t, err)
	dir := t.TempDir()
	server := func(name string, extra ...string) *Server {
		t.Helper()
		d := filepath.Join(dir, name)
		addr, err := freeAddr()
		if err == nil {
			err = os.Mkdir(d, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := startOn(d, addr, false, extra...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(s.kill)
		return s
	}
	ss := &Sentinels{Master: "ordershop"}
	ss.Primary = server("primary")
	host, port, _ := net.SplitHostPort(ss.Primary.Addr)
	ss.Replica = server("replica", "--replicaof", host, port)
	for range 3 {
		ss.Addrs = append(ss.Addrs, StartSentinel(t, ss.Master, ss.Primary.Addr, 2,
			"down-after-milliseconds "+ss.Master+" 500", "failover-timeout "+ss.Master+" 2000"))
	}
	replica := ss.Replica.Client(t)
	Eventually(t, 30*time.Second, "the replica follows the primary", func() bool {
		info, _ := replica.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	for _, addr := range ss.Addrs {
		sentinel := redis.NewSentinelClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { sentinel.Close() })
		Eventually(t, 30*time.Second, "the Sentinel at "+addr+" knows the replica and the other two", func() bool {
			m, err := sentinel.Master(context.Background(), ss.Master).Result()
			return err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2"
		})
	}
	return ss
}

// StartSentinel starts a Sentinel that watches the primary at addr under
// the name master with the quorum, and the further settings of its config
// file ("sentinel " is put in front of each), and returns its address; it
// is stopped when the test ends.
func StartSentinel(t testing.TB, master, addr string, quorum int, settings ...string) string {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	need(t, err)
	dir := t.TempDir()
	own, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	h, p, _ := net.SplitHostPort(own)
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("bind %s\nport %s\ndir %s\nsentinel monitor %s %s %s %d\n", h, p, dir, master, host, port, quorum)
	for _, s := range settings {
		conf += "sentinel " + s + "\n"
	}
	// A Sentinel rewrites its config file with what it learns.
	file := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := spawn(dir, own, file, "--sentinel")
	if err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	t.Cleanup(s.kill)
	return own
}

// PrimaryAddr is the primary's address as the Sentinels announce it: after
// a failover, the promoted replica's.
func (ss *Sentinels) PrimaryAddr(t testing.TB) string {
	t.Helper()
	sentinel := redis.NewSentinelClient(&redis.Options{Addr: ss.Addrs[0]})
	defer sentinel.Close()
	addr, err := sentinel.GetMasterAddrByName(context.Background(), ss.Master).Result()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(addr[0], addr[1])
}

// freeAddr is a free port on 127.0.0.1.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
