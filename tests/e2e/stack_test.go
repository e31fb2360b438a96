package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/tests/scenario"
)

var services = []string{"customer", "product", "inventory", "order", "billing", "crm", "msg", "archive", "gateway"}

// stores are the containers of a stack that are not services: no admin
// listener, a root filesystem of their own.
var stores = []string{"redis", "postgres"}

// slots bounds the stacks that run at once, whatever -parallel says: a stack
// is eleven containers, and the machine may have two cores.
var slots = make(chan struct{}, 2)

// Every request of the tests goes through http.DefaultClient (platformtest's
// and scenario's); nothing may hang a test.
func init() { http.DefaultClient.Timeout = 30 * time.Second }

// node is one container of a stack.
type node struct {
	name    string // its alias on the stack's network: "crm", "crm-2"
	id      string
	port    docker.Port
	service bool   // has an admin listener, which answers /readyz; not a store
	addr    string // where port is published
	admin   string // where the admin port is published
}

// adminPort is every service's admin listener in its container, as in
// docker-compose.yml.
const adminPort = docker.Port("9000/tcp")

// stack is Redis, PostgreSQL and the services of one test, on a network of
// their own.
type stack struct {
	t       *testing.T
	tag     string
	network *dockertest.Network
	mu      sync.Mutex
	nodes   map[string]*node
	order   []string
	rdb     *redis.Client
	// passwords of the Redis users, one per service and ops, the stack's own
	passwords map[string]string
	// pgPassword is the password of PostgreSQL's user ordershop
	pgPassword string

	Gateway scenario.Gateway
	Admin   string // the gateway's admin listener
	// why the test leaves a shop that -verify would refuse; "" for none
	noVerify string
}

// NoVerify skips the -verify that ends every test, for a test that leaves
// the shop inconsistent on purpose, and says why.
func (s *stack) NoVerify(reason string) { s.noVerify = reason }

type config struct {
	env      map[string][]string // extra environment per container
	replicas [][2]string         // extra containers: {name, service}
}

type option func(*config)

// withEnv adds environment variables ("K=V") to one container.
func withEnv(name string, kv ...string) option {
	return func(c *config) { c.env[name] = append(c.env[name], kv...) }
}

// withReplica adds another container of a service, named (and aliased) name.
func withReplica(name, service string, kv ...string) option {
	return func(c *config) {
		c.replicas = append(c.replicas, [2]string{name, service})
		c.env[name] = append(c.env[name], kv...)
	}
}

// newStack starts Redis, PostgreSQL (the archive of events) and the nine
// services and waits until each is ready. Everything is removed when the test ends, also when it fails.
func newStack(t *testing.T, opts ...option) *stack {
	t.Helper()
	slots <- struct{}{}
	t.Cleanup(func() { <-slots })
	cfg := config{env: map[string][]string{}}
	for _, o := range opts {
		o(&cfg)
	}
	b := make([]byte, 4)
	rand.Read(b)
	s := &stack{t: t, tag: "e2e-" + hex.EncodeToString(b), nodes: map[string]*node{}, passwords: map[string]string{}}
	password := func() string {
		pw := make([]byte, 16)
		rand.Read(pw)
		return hex.EncodeToString(pw)
	}
	// Every user of users.acl has a password, or Redis does not start: the
	// replica's and the Sentinels' too, which this stack does not run.
	for _, user := range append([]string{"ops", "replica", "sentinel"}, services...) {
		s.passwords[user] = password()
	}
	s.pgPassword = password()
	network, err := pool.CreateNetwork(s.tag, func(o *docker.CreateNetworkOptions) { o.Labels = labels() })
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	s.network = network
	t.Cleanup(s.teardown)
	s.rdb = redis.NewClient(&redis.Options{
		// The published port changes when Redis restarts: dial the current one.
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr("redis"))
		},
		Username: "ops", Password: s.passwords["ops"],
		MaxRetries: 5,
	})

	begin := time.Now()
	s.run("redis", image("redis"), s.redisEnv(), []string{"redis-server", "--appendonly", "yes"}, "6379/tcp")
	s.run("postgres", image("postgres"), []string{"POSTGRES_USER=ordershop", "POSTGRES_DB=ordershop",
		"POSTGRES_PASSWORD=" + s.pgPassword}, nil, "5432/tcp")
	names := append([]string{}, services...)
	kinds := map[string]string{}
	for _, svc := range services {
		kinds[svc] = svc
	}
	for _, r := range cfg.replicas {
		names = append(names, r[0])
		kinds[r[0]] = r[1]
	}
	for _, name := range names {
		env := append([]string{"REDIS_URL=redis://" + kinds[name] + ":" + s.passwords[kinds[name]] + "@redis:6379/0"}, s.archiveEnv()...)
		s.run(name, image(kinds[name]), serviceEnv(name, kinds[name], append(env, cfg.env[name]...)), nil, portOf(kinds[name]))
	}
	s.waitReady(slices.Concat(stores, names)...)
	s.Gateway = scenario.Gateway("http://" + s.addr("gateway"))
	s.Admin = s.AdminURL("gateway")
	t.Logf("stack %s ready in %v", s.tag, time.Since(begin).Round(time.Millisecond))
	return s
}

func portOf(service string) string {
	if service == "gateway" {
		return "5000/tcp"
	}
	return "8080/tcp"
}

// redisEnv is what docker-compose.yml gives Redis: the passwords its
// entrypoint renders the ACL with.
func (s *stack) redisEnv() []string {
	env := []string{"REDISCLI_AUTH=" + s.passwords["ops"]}
	for user, pw := range s.passwords {
		env = append(env, "REDIS_PASSWORD_"+strings.ToUpper(user)+"="+pw)
	}
	return env
}

// archiveEnv is the archive every service gets, as in docker-compose.yml:
// the stack's PostgreSQL, with the password in PGPASSWORD.
func (s *stack) archiveEnv() []string {
	return []string{"ARCHIVE_URL=postgres://ordershop@postgres:5432/ordershop", "PGPASSWORD=" + s.pgPassword}
}

// serviceEnv is what docker-compose.yml gives a service (REDIS_URL with the
// service's own user and the archive are among extra), plus extra.
func serviceEnv(name, service string, extra []string) []string {
	env := map[string]string{"ADMIN_ADDR": ":9000"}
	// The APIs the services call (the archive's none: ARCHIVE_URL is PostgreSQL).
	for _, svc := range services {
		if svc != "gateway" && svc != "archive" {
			env[strings.ToUpper(svc)+"_URL"] = "http://" + svc + ":8080"
		}
	}
	switch service {
	case "gateway":
		env["ADDR"] = ":5000"
		env["CRM_ADMIN_URL"], env["BILLING_ADMIN_URL"] = "http://crm:9000", "http://billing:9000"
		env["RATE_LIMIT"] = "0" // the tests send hundreds of requests at once from one address
	case "crm", "billing":
		env["CONSUMER_NAME"] = name + "-1"
		if name != service {
			env["CONSUMER_NAME"] = name
		}
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// run creates and starts a container on the stack's network, with its port,
// and a service's admin port, published on random ports of 127.0.0.1.
func (s *stack) run(name, img string, env, cmd []string, port string) {
	s.t.Helper()
	p := docker.Port(port)
	ports := []docker.Port{p}
	service := !slices.Contains(stores, name)
	if service {
		ports = append(ports, adminPort)
	}
	conf := &docker.Config{
		Image: img, Env: env, Cmd: cmd, Labels: labels(), StopSignal: "SIGTERM",
		ExposedPorts: map[docker.Port]struct{}{},
	}
	host := &docker.HostConfig{
		PortBindings: map[docker.Port][]docker.PortBinding{},
		CapDrop:      []string{"ALL"}, SecurityOpt: []string{"no-new-privileges:true"},
	}
	for _, p := range ports {
		conf.ExposedPorts[p] = struct{}{}
		host.PortBindings[p] = []docker.PortBinding{{HostIP: "127.0.0.1"}}
	}
	switch name {
	case "redis":
		conf.Volumes = map[string]struct{}{"/data": {}} // anonymous: removed with the container
		// As in docker-compose.yml: the ACL and the entrypoint that renders it.
		deploy, err := filepath.Abs("../../deploy/redis")
		if err != nil {
			s.t.Fatal(err)
		}
		conf.Entrypoint = []string{"/bin/sh", "/etc/ordershop/redis/entrypoint.sh"}
		host.Binds = []string{deploy + ":/etc/ordershop/redis:ro"}
	case "postgres":
		// As in docker-compose.yml: the cluster on a volume (the image's,
		// anonymous), the socket and temporary files on tmpfs.
		host.ReadonlyRootfs = true
		host.Tmpfs = map[string]string{"/tmp": "", "/var/run/postgresql": ""}
	default:
		host.ReadonlyRootfs = true
	}
	c, err := pool.Client.CreateContainer(docker.CreateContainerOptions{
		Name: s.tag + "-" + name, Config: conf, HostConfig: host,
		NetworkingConfig: &docker.NetworkingConfig{EndpointsConfig: map[string]*docker.EndpointConfig{
			s.network.Network.Name: {Aliases: []string{name}},
		}},
	})
	if err != nil {
		s.t.Fatalf("create %s (%s): %v", name, img, err)
	}
	s.mu.Lock()
	s.nodes[name] = &node{name: name, id: c.ID, port: p, service: service}
	s.order = append(s.order, name)
	s.mu.Unlock()
	s.launch(name)
}

func (s *stack) node(name string) *node {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[name]
	if n == nil {
		s.t.Fatalf("no container %s in the stack", name)
	}
	return n
}

// addr is the published host:port of a container's port.
func (s *stack) addr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[name]; n != nil {
		return n.addr
	}
	return ""
}

// AdminURL is the base URL of a service's admin listener, e.g. for a CRM
// replica's /ops/stats.
func (s *stack) AdminURL(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[name]; n != nil {
		return "http://" + n.admin
	}
	return ""
}

// launch starts a container and reads its published port, which may be a
// new one after a restart.
func (s *stack) launch(name string) {
	s.t.Helper()
	s.Spawn(name)
	s.refresh(name)
}

// refresh reads the host ports a running container's ports are published on.
func (s *stack) refresh(name string) {
	s.t.Helper()
	n := s.node(name)
	var addr, admin string
	s.waitFor(10*time.Second, 50*time.Millisecond, name+"'s published ports", func() bool {
		c := s.inspect(name)
		published := func(p docker.Port) string {
			if b := c.NetworkSettings.Ports[p]; len(b) > 0 && b[0].HostPort != "" {
				return net.JoinHostPort(b[0].HostIP, b[0].HostPort)
			}
			return ""
		}
		addr, admin = published(n.port), published(adminPort)
		return addr != "" && (admin != "" || !n.service)
	})
	s.mu.Lock()
	n.addr, n.admin = addr, admin
	s.mu.Unlock()
}

// Spawn only starts a container, and returns at once; Start also waits
// until it is ready.
func (s *stack) Spawn(name string) {
	s.t.Helper()
	if err := pool.Client.StartContainer(s.node(name).id, nil); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
}

func (s *stack) inspect(name string) *docker.Container {
	s.t.Helper()
	c, err := pool.Client.InspectContainer(s.node(name).id)
	if err != nil {
		s.t.Fatalf("inspect %s: %v", name, err)
	}
	return c
}

// Ready answers whether a container is ready: Redis answers PING,
// PostgreSQL lets ordershop log in, a service answers /readyz with 200.
func (s *stack) Ready(name string) bool {
	switch name {
	case "redis", "postgres":
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if name == "redis" {
			return s.rdb.Ping(ctx).Err() == nil
		}
		conn, err := pgx.Connect(ctx, s.PostgresURL())
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx) == nil
	}
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(s.AdminURL(name) + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// readiness asks containers at once whether they are ready.
func (s *stack) readiness(names ...string) map[string]bool {
	out := make([]bool, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = s.Ready(name) }()
	}
	wg.Wait()
	m := map[string]bool{}
	for i, name := range names {
		m[name] = out[i]
	}
	return m
}

func (s *stack) waitReady(names ...string) {
	s.t.Helper()
	for _, name := range names {
		s.waitFor(60*time.Second, 50*time.Millisecond, name+" ready", func() bool {
			if !s.inspect(name).State.Running {
				s.t.Fatalf("%s exited while starting", name)
			}
			return s.Ready(name)
		})
	}
}

// Stop stops a container with SIGTERM, as docker stop does, and waits until
// it has exited.
func (s *stack) Stop(name string) { s.t.Helper(); s.signal(name, docker.SIGTERM) }

// Kill kills a container with SIGKILL and waits until it is gone.
func (s *stack) Kill(name string) { s.t.Helper(); s.signal(name, docker.SIGKILL) }

// Start starts a stopped container and waits until it is ready.
func (s *stack) Start(name string) {
	s.t.Helper()
	s.launch(name)
	s.waitReady(name)
}

// Restart stops and starts a container.
func (s *stack) Restart(name string) {
	s.t.Helper()
	s.Stop(name)
	s.Start(name)
}

func (s *stack) signal(name string, sig docker.Signal) {
	s.t.Helper()
	if err := pool.Client.KillContainer(docker.KillContainerOptions{ID: s.node(name).id, Signal: sig}); err != nil {
		s.t.Fatalf("signal %d to %s: %v", sig, name, err)
	}
	s.waitFor(30*time.Second, 20*time.Millisecond, name+" exited", func() bool { return !s.inspect(name).State.Running })
}

// waitFor polls cond every interval until it holds, and fails the test
// after within.
func (s *stack) waitFor(within, every time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(every)
	}
}

// logs is what a container logged since a time (to the second), its last
// 1000 lines at most.
func (s *stack) logs(name string, since time.Time) string {
	s.t.Helper()
	var out bytes.Buffer
	err := pool.Client.Logs(docker.LogsOptions{
		Container: s.node(name).id, OutputStream: &out, ErrorStream: &out,
		Stdout: true, Stderr: true, Since: since.Unix(), Tail: "1000",
	})
	if err != nil {
		s.t.Fatalf("logs of %s: %v", name, err)
	}
	return out.String()
}

// teardown removes the containers with their volumes and the network; after
// a failure it first shows the end of each container's log.
func (s *stack) teardown() {
	s.rdb.Close()
	if s.noVerify == "" {
		s.verify()
	}
	if s.t.Failed() {
		for _, name := range s.order {
			var out bytes.Buffer
			err := pool.Client.Logs(docker.LogsOptions{
				Container: s.nodes[name].id, OutputStream: &out, ErrorStream: &out,
				Stdout: true, Stderr: true, Tail: "20",
			})
			if err != nil {
				fmt.Fprintf(&out, "(no logs: %v)", err)
			}
			s.t.Logf("--- last lines of %s:\n%s", name, strings.TrimRight(out.String(), "\n"))
		}
	}
	for _, name := range s.order {
		err := pool.Client.RemoveContainer(docker.RemoveContainerOptions{ID: s.nodes[name].id, Force: true, RemoveVolumes: true})
		if err != nil {
			s.t.Errorf("remove %s: %v", name, err)
		}
	}
	if err := pool.RemoveNetwork(s.network); err != nil {
		s.t.Errorf("remove network %s: %v", s.tag, err)
	}
}

// verify stops the services, runs the gateway's image once with -verify as
// the ops user, as the README does with compose run, and fails the test
// unless it exits 0.
func (s *stack) verify() {
	s.t.Helper()
	// A quiet system first: no consumer still sending a mail meanwhile. One
	// stopped already answers an error, which does not matter here.
	for _, name := range s.order {
		if s.nodes[name].service {
			pool.Client.StopContainer(s.nodes[name].id, 10)
		}
	}
	env := serviceEnv("verify", "gateway", append([]string{"REDIS_URL=redis://ops:" + s.passwords["ops"] + "@redis:6379/0"}, s.archiveEnv()...))
	c, err := pool.Client.CreateContainer(docker.CreateContainerOptions{
		Name: s.tag + "-verify", Config: &docker.Config{Image: image("gateway"), Env: env, Cmd: []string{"-verify"}, Labels: labels()},
		HostConfig: &docker.HostConfig{ReadonlyRootfs: true, CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges:true"}},
		NetworkingConfig: &docker.NetworkingConfig{EndpointsConfig: map[string]*docker.EndpointConfig{
			s.network.Network.Name: {},
		}},
	})
	if err != nil {
		s.t.Errorf("create the -verify container: %v", err)
		return
	}
	defer pool.Client.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
	if err := pool.Client.StartContainer(c.ID, nil); err != nil {
		s.t.Errorf("start the -verify container: %v", err)
		return
	}
	code, err := pool.Client.WaitContainer(c.ID)
	var out bytes.Buffer
	pool.Client.Logs(docker.LogsOptions{Container: c.ID, OutputStream: &out, ErrorStream: &out, Stdout: true, Stderr: true})
	if err != nil || code != 0 {
		s.t.Errorf("gateway -verify at the end: exit %d (%v)\n%s", code, err, out.String())
	}
}

// Redis is a client of the stack's Redis on its published port.
func (s *stack) Redis() *redis.Client { return s.rdb }

// PostgresURL is the URL of the stack's archive on its published port, as
// the user ordershop.
func (s *stack) PostgresURL() string {
	return "postgres://ordershop:" + s.pgPassword + "@" + s.addr("postgres") + "/ordershop?sslmode=disable"
}
