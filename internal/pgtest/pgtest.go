// Package pgtest gives tests a real PostgreSQL over TCP, as redistest gives
// them a Redis: the server at PGTEST_URL if set, else one started from
// Debian's postgresql package (initdb and postgres under
// /usr/lib/postgresql/<version>/bin) on a free 127.0.0.1 port, in a
// temporary folder. Each test gets a database of its own, so that tests run
// in parallel on one server. With CI=true a missing PostgreSQL fails the
// tests instead of skipping them.
//
// A package that uses it runs its tests through Main:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	once        sync.Once
	sharedURL   string
	unavailable error
	stopShared  = func() {}
)

// Main runs the tests and stops the shared server if one of them started it.
func Main(m *testing.M) int {
	defer Stop()
	return m.Run()
}

// Stop stops the shared server, for a TestMain that runs its tests through
// another Main (redistest's).
func Stop() { stopShared() }

// URL is the URL of a new, empty database of the test's own on the shared
// server; it is dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if u := os.Getenv("PGTEST_URL"); u != "" {
			sharedURL = u
			return
		}
		var s *Server
		if s, unavailable = Run(); unavailable == nil {
			sharedURL, stopShared = s.URL("postgres"), s.Close
		}
	})
	need(t, unavailable)
	return newDatabase(t, sharedURL)
}

// Server is a PostgreSQL of one test's own, which the test may stop and
// start again on the same port without losing data (a fault test).
type Server struct {
	Addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	cred   *syscall.Credential
}

// NewServer starts a Server; it is stopped when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := Run()
	need(t, err)
	t.Cleanup(s.Close)
	return s
}

// URL is the URL of the database db on the server.
func (s *Server) URL(db string) string {
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"), Host: s.Addr, Path: db,
		RawQuery: "sslmode=disable"}).String()
}

// Database makes a new, empty database on the server and returns its URL.
func (s *Server) Database(t testing.TB) string { return newDatabase(t, s.URL("postgres")) }

// Stop stops the server at once (SIGQUIT: no checkpoint, as a crash would).
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGQUIT)
	<-s.exited
	s.cmd = nil
	return nil
}

// Start starts a stopped server again, on the same port, with its data.
func (s *Server) Start() error {
	if s.cmd != nil {
		return nil
	}
	return s.run()
}

// Close stops the server and removes its folder.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

func need(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no PostgreSQL for the tests: %v", err)
	}
	t.Skipf("no PostgreSQL for the tests: %v", err)
}

// bin is the folder of the newest installed PostgreSQL's programs.
func bin() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("no initdb: install Debian's postgresql package, or set PGTEST_URL")
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) < version(found[j]) })
	return filepath.Dir(found[len(found)-1]), nil
}

func version(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// Run makes a cluster in a new folder with initdb and starts postgres on
// a free port, for a program (make bench) as for the tests; Close stops it.
// PostgreSQL refuses to run as root, so as root both run as nobody, in a
// folder nobody owns.
func Run() (*Server, error) {
	dir, err := bin()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: root}
	if os.Geteuid() == 0 {
		if s.cred, err = nobody(); err == nil {
			err = chownAll(root, s.cred)
		}
		if err == nil {
			err = os.Chmod(root, 0o755)
		}
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
	}
	initdb := s.command(filepath.Join(dir, "initdb"), "-D", s.data(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	s.Addr = l.Addr().String()
	l.Close()
	if err := s.run(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	return cmd
}

// run starts postgres on s.Addr and waits until it takes connections.
func (s *Server) run() error {
	dir, err := bin()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = s.command(filepath.Join(dir, "postgres"), "-D", s.data(), "-p", port, "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	log, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		log.Close()
		s.cmd = nil
		return err
	}
	cmd, exited := s.cmd, make(chan struct{})
	s.exited = exited
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
		if err == nil {
			return conn.Close(context.Background())
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			return fmt.Errorf("postgres did not start on %s: %v\n%s", s.Addr, err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling for the server, not synchronising tests
	}
}

func nobody() (*syscall.Credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func chownAll(dir string, c *syscall.Credential) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, int(c.Uid), int(c.Gid))
	})
}

// newDatabase creates a database with a random name on the server at admin
// and drops it when the test ends.
func newDatabase(t testing.TB, admin string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() { exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("PostgreSQL URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}
