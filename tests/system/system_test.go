// Package system runs all nine services as processes on 127.0.0.1 against
// one real Redis and drives them through the gateway, as a client would.
package system

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
)

var services = []string{"customer", "product", "inventory", "order", "billing", "crm", "msg", "gateway", "archive"}

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ordershop-bin")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	binDir = dir
	build := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs()...)...)
	build.Dir = "../.."
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the services:", err)
		os.Exit(1)
	}
	os.Exit(redistest.Main(m))
}

func pkgs() []string {
	out := make([]string, len(services))
	for i, s := range services {
		out[i] = "./services/" + s
	}
	return out
}

// system is the nine services of one test, with keys of their own.
type system struct {
	t      *testing.T
	prefix string
	env    []string
	addr   map[string]string
	admin  map[string]string // the admin listeners
	procs  map[string]*exec.Cmd
	logs   map[string]string
	URL    string // the gateway
	Admin  string // the gateway's admin listener
}

// startSystem starts the nine services, with the variables of env on top of
// the tests' own.
func startSystem(t *testing.T, env ...string) *system {
	t.Helper()
	s := &system{t: t, addr: map[string]string{}, admin: map[string]string{}, procs: map[string]*exec.Cmd{}, logs: map[string]string{}}
	s.prefix = redistest.Prefix(t)
	s.env = append(append(os.Environ(), redistest.Env(t)...), "KEY_PREFIX="+s.prefix,
		"CLAIM_IDLE=300ms", "MAX_DELIVERIES=3", "REQUEST_TIMEOUT=10s",
		"RATE_LIMIT=0",         // the tests send hundreds of requests at once from one address
		"RESERVATION_GRACE=5s") // a reservation whose order never came is released within seconds
	s.env = append(s.env, env...)
	for _, name := range services {
		s.addr[name], s.admin[name] = freeAddr(t), freeAddr(t)
		if name == "archive" {
			continue // nobody calls it, and ARCHIVE_URL is the archive's PostgreSQL
		}
		s.env = append(s.env, strings.ToUpper(name)+"_URL=http://"+s.addr[name], strings.ToUpper(name)+"_ADMIN_URL=http://"+s.admin[name])
	}
	logDir := t.TempDir()
	for _, name := range services {
		s.logs[name] = filepath.Join(logDir, name+".log")
		s.Start(name)
	}
	t.Cleanup(func() {
		for _, name := range services {
			s.Stop(name)
		}
		// Every test leaves a shop that agrees with itself: quiet now, the
		// cache and the invariants must hold.
		if out, err := s.command("gateway", "-verify").CombinedOutput(); err != nil {
			t.Errorf("gateway -verify at the end: %v\n%s", err, out)
		}
		if t.Failed() {
			s.dumpLogs()
		}
	})
	s.URL, s.Admin = "http://"+s.addr["gateway"], "http://"+s.admin["gateway"]
	return s
}

// Start starts a service and waits until it is ready.
func (s *system) Start(name string) {
	s.t.Helper()
	log, err := os.OpenFile(s.logs[name], os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = append(s.env, "ADDR="+s.addr[name], "ADMIN_ADDR="+s.admin[name], "CONSUMER_NAME="+name+"-1")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.procs[name] = cmd
	redistest.Eventually(s.t, 20*time.Second, name+" ready", func() bool {
		resp, err := http.Get("http://" + s.admin[name] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Run runs a service binary with args to its end, e.g. gateway -rebuild.
func (s *system) Run(name string, args ...string) {
	s.t.Helper()
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func (s *system) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = append(s.env, "ADDR="+s.addr[name], "ADMIN_ADDR="+s.admin[name])
	return cmd
}

// Stop stops a service with SIGTERM, as docker stop does, waits for it, and
// checks that it logged to the end: its last line is "stopped", which it
// logs as it exits.
func (s *system) Stop(name string) {
	if s.procs[name] == nil {
		return
	}
	s.end(name, syscall.SIGTERM)
	if lines := s.logLines(s.t, name); len(lines) == 0 || lines[len(lines)-1].Msg != "stopped" {
		s.t.Errorf("%s, stopped, did not log to the end: its last line is not \"stopped\"", name)
	}
}

// Kill kills a service with SIGKILL, as a crash or the OOM killer does: it
// finishes nothing it was doing.
func (s *system) Kill(name string) { s.end(name, syscall.SIGKILL) }

func (s *system) end(name string, sig os.Signal) {
	if cmd := s.procs[name]; cmd != nil {
		cmd.Process.Signal(sig)
		cmd.Wait()
		delete(s.procs, name)
	}
}

// logLine is what the tests read of a service's log line.
type logLine struct {
	Msg     string `json:"msg"`
	TraceID string `json:"trace_id"`
}

// logLines is what a service has logged so far.
func (s *system) logLines(t *testing.T, name string) []logLine {
	f, err := os.Open(s.logs[name])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}
	return lines
}

func (s *system) dumpLogs() {
	for _, name := range services {
		f, err := os.Open(s.logs[name])
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		s.t.Logf("--- last lines of %s:\n%s", name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
}

// freeAddr is a free address for a service to listen on. Its port is below
// the kernel's ephemeral range (32768 and up), where the test's own outgoing
// connections take theirs: a port picked there may be taken by one of them
// before the service binds it. It is never handed out twice: the tests
// running side by side pick over a hundred, and bind them only later.
func freeAddr(t *testing.T) string {
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if _, dup := picked.LoadOrStore(addr, true); dup {
			continue
		}
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port from 20000 to 32000")
	return ""
}

var picked sync.Map // addresses freeAddr handed out
