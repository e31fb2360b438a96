package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// services are the shop's binaries in bin/, as make build leaves them.
var services = []string{"customer", "product", "inventory", "order", "billing", "crm", "msg", "gateway"}

// proc is a process the bench started; stop ends it.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// start runs a binary with env on top of the driver's, its output to
// dir/name.log. The process dies with the driver.
func start(dir, name, bin string, env []string, args ...string) (*proc, error) {
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process with SIGTERM, as docker stop does, and after 10 s
// with SIGKILL.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// exited reports whether the process has ended already.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// freeAddr is a free loopback address, below the kernel's ephemeral range
// (32768 and up) where the bench's own connections take their ports.
func freeAddr() (string, error) {
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr, nil
		}
	}
	return "", errors.New("no free port")
}

// poll calls ok until it answers true, every 10 ms, for at most d.
func poll(ctx context.Context, d time.Duration, what string, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not after %v", what, d)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// startRedis starts a throwaway redis-server on a free port in its own
// directory, without persistence, with args added (e.g. --replicaof).
func startRedis(ctx context.Context, dir, name string, args ...string) (*proc, *redis.Client, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	rdir := filepath.Join(dir, name)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, nil, err
	}
	p, err := start(dir, name, "redis-server", nil, append([]string{"--bind", host, "--port", port, "--dir", rdir,
		"--save", "", "--appendonly", "no"}, args...)...)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	err = poll(ctx, 10*time.Second, name+" up", func() bool { return !p.exited() && rdb.Ping(ctx).Err() == nil })
	if err != nil {
		p.stop()
		return nil, nil, err
	}
	return p, rdb, nil
}

// shop is the eight services as processes on one Redis, under a key prefix.
type shop struct {
	dir, bin string
	env      []string
	addr     map[string]string // API listeners
	admin    map[string]string // admin listeners
	procs    map[string]*proc
}

// newShop picks the services' addresses; startService starts each.
func newShop(dir, bin, redisAddr, prefix string) (*shop, error) {
	s := &shop{dir: dir, bin: bin, addr: map[string]string{}, admin: map[string]string{}, procs: map[string]*proc{}}
	s.env = []string{"REDIS_URL=redis://" + redisAddr + "/0", "KEY_PREFIX=" + prefix,
		"RATE_LIMIT=0"} // one client address sends thousands of requests a second
	for _, name := range services {
		var err error
		if s.addr[name], err = freeAddr(); err != nil {
			return nil, err
		}
		if s.admin[name], err = freeAddr(); err != nil {
			return nil, err
		}
		up := strings.ToUpper(name)
		s.env = append(s.env, up+"_URL=http://"+s.addr[name], up+"_ADMIN_URL=http://"+s.admin[name])
	}
	return s, nil
}

// startService starts a service with env on top of the shop's, and waits
// until its /readyz answers 200.
func (s *shop) startService(ctx context.Context, name string, env ...string) error {
	env = append(append(append([]string{}, s.env...), "ADDR="+s.addr[name], "ADMIN_ADDR="+s.admin[name],
		"CONSUMER_NAME="+name+"-1"), env...)
	p, err := start(s.dir, name, filepath.Join(s.bin, name), env)
	if err != nil {
		return err
	}
	s.procs[name] = p
	err = poll(ctx, 20*time.Second, name+" ready", func() bool {
		if p.exited() {
			return true
		}
		resp, err := http.Get("http://" + s.admin[name] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err == nil && p.exited() {
		err = fmt.Errorf("%s exited at start, see %s", name, filepath.Join(s.dir, name+".log"))
	}
	return err
}

// stopService stops a service that runs.
func (s *shop) stopService(name string) {
	if p := s.procs[name]; p != nil {
		p.stop()
		delete(s.procs, name)
	}
}

// stop stops every service that runs.
func (s *shop) stop() {
	for name := range s.procs {
		s.stopService(name)
	}
}

// cpuTime is the CPU time the processes used so far, user and system, from
// /proc/<pid>/stat (in ticks of 10 ms, Linux's USER_HZ); 0 where there is
// no /proc.
func cpuTime(procs ...*proc) time.Duration {
	var ticks int64
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// The fields after the command's name, which is in parentheses
		// and may hold spaces: state is the first, utime the 12th.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
