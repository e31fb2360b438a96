// Package redistest gives tests a real Redis over TCP: the one at REDIS_URL
// if set, else a redis-server from PATH on a free 127.0.0.1 port, else a
// container started through dockertest. With REDISTEST_CLUSTER=1 it is a
// Redis Cluster of three masters made of redis-servers from PATH instead
// (cluster.go), and STREAM_PARTITIONS tells the tests how many partitions
// their stores use. With CI=true a missing Redis fails the tests instead of
// skipping them. A test that needs a server of its own takes a Server
// (NewServer), or a primary, a replica and three Sentinels (NewSentinels,
// sentinel.go) whose primary it may kill.
//
// A package that uses it runs its tests through Main:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/ory/dockertest/v3"
	"github.com/redis/go-redis/v9"
)

var (
	once        sync.Once
	sharedURL   string
	unavailable error
	stopShared  = func() {}
)

// Main runs the tests and stops the shared Redis if one of them started it.
// It starts with the first test that asks for it, not before: a binary that
// runs no such test (a fuzz worker, -run of a pure test) starts none.
func Main(m *testing.M) int {
	defer func() { stopShared() }()
	return m.Run()
}

// shared starts the shared Redis once.
func shared() (string, error) {
	once.Do(func() { sharedURL, stopShared, unavailable = start() })
	return sharedURL, unavailable
}

// Client returns a client of the shared Redis and a key prefix that is the
// test's own, so that tests run in parallel on one server.
func Client(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	url, err := shared()
	need(t, err)
	var rdb redis.UniversalClient
	if Cluster() {
		opt, err := redis.ParseClusterURL(url)
		if err != nil {
			t.Fatalf("cluster URL: %v", err)
		}
		opt.Protocol = 2 // as the services' clients speak (platform.redisOptions)
		rdb = redis.NewClusterClient(opt)
	} else {
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("REDIS_URL: %v", err)
		}
		opt.Protocol = 2
		rdb = redis.NewClient(opt)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb, Prefix(t)
}

// Cluster tells whether the shared Redis is a cluster (REDISTEST_CLUSTER=1).
func Cluster() bool { return os.Getenv("REDISTEST_CLUSTER") == "1" }

// Partitions is the number of partitions the tests' stores split each
// stream into: STREAM_PARTITIONS, 1 when unset.
func Partitions() int {
	n, err := strconv.Atoi(os.Getenv("STREAM_PARTITIONS"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Env is the environment of a service the test starts as a process: the
// shared Redis, as a cluster or not, and the partitions.
func Env(t testing.TB) []string {
	t.Helper()
	return []string{"REDIS_URL=" + URL(t), "REDIS_CLUSTER=" + strconv.FormatBool(Cluster()),
		"STREAM_PARTITIONS=" + strconv.Itoa(Partitions())}
}

// URL is the shared Redis's URL, for services the test starts as processes.
func URL(t testing.TB) string {
	t.Helper()
	url, err := shared()
	need(t, err)
	return url
}

// Prefix is a key prefix of the test's own.
func Prefix(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "t:" + strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + ":" + hex.EncodeToString(b) + ":"
}

func need(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no Redis for the tests: %v", err)
	}
	t.Skipf("no Redis for the tests: %v", err)
}

func start() (url string, stop func(), err error) {
	if url := os.Getenv("REDIS_URL"); url != "" {
		return url, func() {}, nil
	}
	if Cluster() {
		return startCluster()
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		dir, err := os.MkdirTemp("", "redistest")
		if err != nil {
			return "", func() {}, err
		}
		s, err := startBinary(dir, false)
		if err != nil {
			os.RemoveAll(dir)
			return "", func() {}, err
		}
		return "redis://" + s.Addr, func() { s.kill(); os.RemoveAll(dir) }, nil
	}
	return startContainer()
}

func startContainer() (string, func(), error) {
	pool, err := dockertest.NewPool("")
	if err == nil {
		err = pool.Client.Ping()
	}
	if err != nil {
		return "", func() {}, fmt.Errorf("no REDIS_URL, no redis-server on PATH, no Docker: %w", err)
	}
	repo, tag, _ := strings.Cut(envOr("REDIS_IMAGE", "redis:7-alpine"), ":")
	res, err := pool.RunWithOptions(&dockertest.RunOptions{Repository: repo, Tag: tag})
	if err != nil {
		return "", func() {}, fmt.Errorf("start a Redis container: %w", err)
	}
	stop := func() { pool.Purge(res) }
	url := "redis://" + res.GetHostPort("6379/tcp")
	if err := waitReady(strings.TrimPrefix(url, "redis://")); err != nil {
		stop()
		return "", func() {}, err
	}
	return url, stop, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Server is a redis-server of one test's own, with AOF on, that the test may
// stop and restart on the same port without losing data.
type Server struct {
	Addr string
	dir  string
	cmd  *exec.Cmd
}

// NewServer starts a Server; it is stopped when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	need(t, err)
	s, err := startBinary(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	return s
}

// Client returns a client of the server.
func (s *Server) Client(t testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Stop shuts the server down (SIGTERM: it flushes its AOF first).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	s.cmd.Wait()
	s.cmd = nil
}

// Start starts a stopped server again on its address and data folder.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	n, err := startOn(s.dir, s.Addr, true)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = n.cmd
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	s.kill()
	s.cmd = nil
}

func (s *Server) kill() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// NewReplica starts a redis-server that replicates the Redis at master (a
// Server, the shared Redis, or a master of the cluster) and returns once the
// master counts it as in sync; it is killed when the test ends.
func NewReplica(t testing.TB, master string) *Server {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	need(t, err)
	host, port, _ := net.SplitHostPort(master)
	s, err := startBinary(t.TempDir(), false, "--replicaof", host, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	rdb := redis.NewClient(&redis.Options{Addr: master})
	defer rdb.Close()
	_, own, _ := net.SplitHostPort(s.Addr)
	Eventually(t, 30*time.Second, "the replica in sync", func() bool {
		info, _ := rdb.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "port="+own+",state=online")
	})
	return s
}

// ReplicaOf is NewReplica of the Redis of rdb that holds key: on a
// cluster, the master of its hash slot.
func ReplicaOf(t testing.TB, rdb redis.UniversalClient, key string) *Server {
	t.Helper()
	master := rdb
	if cluster, ok := rdb.(*redis.ClusterClient); ok {
		var err error
		if master, err = cluster.MasterForKey(context.Background(), key); err != nil {
			t.Fatal(err)
		}
	}
	return NewReplica(t, master.(*redis.Client).Options().Addr)
}

func startBinary(dir string, aof bool, extra ...string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return startOn(dir, addr, aof, extra...)
}

func startOn(dir, addr string, aof bool, extra ...string) (*Server, error) {
	host, port, _ := net.SplitHostPort(addr)
	// DEBUG SLEEP stalls a test's own server, as a busy or paused Redis would.
	// A replica (NewReplica) is sent its first copy at once, not 5 s later.
	args := append([]string{"--bind", host, "--port", port, "--dir", dir, "--save", "", "--protected-mode", "no",
		"--enable-debug-command", "local", "--repl-diskless-sync-delay", "0"}, extra...)
	if aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	return spawn(dir, addr, args...)
}

// spawn runs redis-server with args, its log in dir, and waits until it
// answers at addr.
func spawn(dir, addr string, args ...string) (*Server, error) {
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = procAttr()
	log, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: addr, dir: dir, cmd: cmd}
	if err := waitReady(addr); err != nil {
		s.kill()
		out, _ := os.ReadFile(log.Name())
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	return s, nil
}

func waitReady(addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("redis at %s not ready", addr), err)
		}
		time.Sleep(20 * time.Millisecond) // polling a server that is starting
	}
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Snapshot is every key under prefix with its DUMP: two equal snapshots mean
// that nothing under prefix was written in between.
func Snapshot(t testing.TB, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	keys, err := eventstore.New(rdb, "").Scan(ctx, prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		out[k] = rdb.Dump(ctx, k).Val()
	}
	return out
}
