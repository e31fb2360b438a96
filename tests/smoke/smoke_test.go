// Package smoke brings the stack up with docker-compose.yml from a clean
// state, as the README's run command does, with docker-compose 1.29 and with
// Compose v2 (COMPOSE_V2), and walks the original scenario against
// 127.0.0.1:5000 (GATEWAY_PORT), with CRM stopped and started on the way; the
// gateway's admin listener is on 127.0.0.1:9000 (GATEWAY_ADMIN_PORT). It runs
// CRM as three replicas with one killed, and the Redis Cluster variant. It
// tears everything down, volumes included, even when it fails.
package smoke

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/tests/scenario"
)

// stack is one compose project of the smoke tests, run by one compose
// program: docker-compose 1.29 (scripts/compose.sh) always, and Compose v2
// as well when COMPOSE_V2 names its binary (.ci/run builds it with
// scripts/compose-v2.sh). Each has a project name of its own, and with
// ORDERSHOP_TAG (the tag of the images it runs, which wins over local.env's)
// one of that tag's own, so that trees tested side by side do not take each
// other down.
type stack struct {
	compose []string // the program, relative to the repository
	first   bool     // run by the first program: what does not hang on the program runs here only
	project string
	files   []string // -f files beside docker-compose.yml
	profile string   // a compose profile to run too
}

// program is a compose program to test with, by subtest name.
type program struct {
	name string
	cmd  []string
}

func programs() []program {
	p := []program{{"compose-1.29", []string{"scripts/compose.sh"}}}
	if v2 := os.Getenv("COMPOSE_V2"); v2 != "" {
		p = append(p, program{"compose-v2", []string{v2}})
	}
	return p
}

// eachCompose runs test as a subtest with each compose program, one after
// the other (the stacks publish the same ports), on project
// ordershop-<name>[-<tag>][-v2].
func eachCompose(t *testing.T, name string, base stack, test func(t *testing.T, s stack)) {
	needDocker(t)
	buildImages(t)
	for i, p := range programs() {
		s := base
		s.compose, s.project, s.first = p.cmd, "ordershop-"+name+suffix(os.Getenv("ORDERSHOP_TAG")), i == 0
		if i > 0 {
			s.project += "-v2"
		}
		t.Run(p.name, func(t *testing.T) {
			s.run(t, "down", "-v", "--remove-orphans")
			t.Cleanup(func() {
				if t.Failed() {
					t.Log(s.run(t, "logs", "--tail", "20"))
				}
				s.run(t, "down", "-v", "--remove-orphans")
				for _, kind := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"}} {
					if left := docker(t, append(kind, "--filter", s.label())...); left != "" {
						t.Errorf("docker %s left behind: %s", kind[0], left)
					}
				}
			})
			test(t, s)
		})
	}
}

// buildImages builds the local images once per run of the package.
var buildImages = func() func(t *testing.T) {
	var once sync.Once
	var out []byte
	var err error
	return func(t *testing.T) {
		t.Helper()
		once.Do(func() {
			build := exec.Command("scripts/build-local-images.sh")
			build.Dir = "../.."
			out, err = build.CombinedOutput()
		})
		if err != nil {
			t.Fatalf("building the local images: %v\n%s", err, out)
		}
	}
}()

func suffix(tag string) string {
	if tag == "" || tag == "local" {
		return ""
	}
	return "-" + tag
}

// env is what compose gets beside local.env: the Redis and PostgreSQL
// passwords, which scripts/up.sh keeps in .env, of the test's own.
var env = func() []string {
	env := []string{
		"RATE_LIMIT=0", // the scenario's polls from one address would go over the gateway's limit
		"ADMIN_TOKEN=" + adminToken,
	}
	if tag := os.Getenv("ORDERSHOP_TAG"); tag != "" { // the script builds them with the tag
		env = append(env, "REDIS_IMAGE=ordershop/redis:"+tag, "POSTGRES_IMAGE=ordershop/postgres:"+tag, "PROMETHEUS_IMAGE=ordershop/prometheus:"+tag)
	}
	for _, user := range []string{"ops", "gateway", "customer", "product", "inventory", "order", "msg", "billing", "crm", "archive", "replica", "sentinel"} {
		b := make([]byte, 16)
		rand.Read(b)
		env = append(env, "REDIS_PASSWORD_"+strings.ToUpper(user)+"="+hex.EncodeToString(b))
	}
	b := make([]byte, 16)
	rand.Read(b)
	env = append(env, "POSTGRES_PASSWORD="+hex.EncodeToString(b))
	return env
}()

// adminToken guards the admin listeners, and Prometheus sends it.
var adminToken = rand.Text()

// run runs compose on the stack's project with the local images, and fails
// the test if it fails.
func (s stack) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.try(args...)
	if err != nil {
		t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs compose and answers its output and error.
func (s stack) try(args ...string) (string, error) {
	flags := []string{"-p", s.project, "--env-file", "local.env"}
	if s.profile != "" {
		flags = append(flags, "--profile", s.profile)
	}
	if len(s.files) > 0 {
		flags = append(flags, "-f", "docker-compose.yml")
		for _, f := range s.files {
			flags = append(flags, "-f", f)
		}
	}
	cmd := exec.Command(s.compose[0], append(append(s.compose[1:], flags...), args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// label selects the project's containers, networks and volumes.
func (s stack) label() string { return "label=com.docker.compose.project=" + s.project }

// containers answers the ids of the running containers of a service, or of
// all services without one.
func (s stack) containers(t *testing.T, service string) []string {
	t.Helper()
	args := []string{"ps", "-q", "--filter", s.label()}
	if service != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+service)
	}
	return strings.Fields(docker(t, args...))
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func needDocker(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Docker is needed: %v", err)
		}
		t.Skipf("no Docker: %v", err)
	}
}

func TestComposeStackRunsTheOriginalScenario(t *testing.T) {
	eachCompose(t, "smoke", stack{profile: "observability"}, func(t *testing.T, s stack) {
		start := time.Now()
		s.run(t, "up", "-d", "--no-build")
		s.waitHealthy(t, 12) // Redis, PostgreSQL, nine services, Prometheus
		t.Logf("stack healthy %v after up", time.Since(start).Round(time.Second))
		s.checkContainers(t)
		s.checkPrometheus(t)

		g := scenario.Gateway("http://127.0.0.1:" + envOr("GATEWAY_PORT", "5000"))
		scenario.Original(t, g)

		s.run(t, "stop", "crm")
		_, emails := g.Customers(t, "smoke", 20)
		if n := g.CountMails(t, "Welcome"); n[emails[0]] != 0 {
			t.Fatal("a welcome mail was sent while CRM was stopped")
		}
		// CRM's lag, in Prometheus and on the dashboard's JSON: it rises while
		// CRM is stopped and falls once it is back.
		lag := func(want func(float64) bool) {
			t.Helper()
			redistest.Eventually(t, time.Minute, "CRM's lag in Prometheus", func() bool {
				v, ok := s.promQuery(t, `sum(ordershop_consumer_group_lag{service="gateway",group="crm"})`)
				return ok && want(v)
			})
		}
		lag(func(v float64) bool { return v >= 20 })
		if n := s.dashboardLag(t, "crm"); n < 20 {
			t.Errorf("the dashboard shows a lag of %d for crm, want 20 or more", n)
		}
		s.run(t, "start", "crm")
		g.WaitMails(t, time.Minute, "Welcome", emails)
		lag(func(v float64) bool { return v == 0 })
		if n := s.dashboardLag(t, "crm"); n != 0 {
			t.Errorf("the dashboard shows a lag of %d for crm once it caught up", n)
		}
	})
}

// promQuery asks Prometheus for one number.
func (s stack) promQuery(t *testing.T, query string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + envOr("PROMETHEUS_PORT", "9090") + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct{ Value []any }
		}
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 || len(r.Data.Result[0].Value) != 2 {
		return 0, false
	}
	v, err := strconv.ParseFloat(fmt.Sprint(r.Data.Result[0].Value[1]), 64)
	return v, err == nil
}

// dashboardLag is a group's lag over every stream, as the dashboard's
// /ops/streams shows it on the gateway's admin listener.
func (s stack) dashboardLag(t *testing.T, group string) int64 {
	lag, _ := s.dashboardGroup(t, group)
	return lag
}

// dashboardGroup is a group's lag and pending entries over every stream,
// from /ops/streams.
func (s stack) dashboardGroup(t *testing.T, group string) (lag, pending int64) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+envOr("GATEWAY_ADMIN_PORT", "9000")+"/ops/streams", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var streams []struct {
		Groups []struct {
			Name         string
			Lag, Pending int64
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&streams); err != nil {
		t.Fatalf("/ops/streams: %v", err)
	}
	for _, st := range streams {
		for _, g := range st.Groups {
			if g.Name == group {
				lag, pending = lag+g.Lag, pending+g.Pending
			}
		}
	}
	return lag, pending
}

// checkContainers checks what compose gives every container: memory, CPU and
// process limits; the services' images carry the CA certificates that
// rediss:// needs; Redis and PostgreSQL run as their own users, and Redis
// answers nobody unknown.
func (s stack) checkContainers(t *testing.T) {
	t.Helper()
	ids := s.containers(t, "")
	var redis string
	for _, id := range ids {
		info := strings.Fields(docker(t, "inspect", "-f",
			`{{index .Config.Labels "com.docker.compose.service"}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{if .HostConfig.PidsLimit}}{{.HostConfig.PidsLimit}}{{else}}0{{end}} {{.Config.User}}`, id))
		if len(info) < 4 {
			t.Fatalf("inspect %s: %q", id, info)
		}
		service := info[0]
		for i, what := range []string{"memory", "CPU", "pids"} {
			if info[i+1] == "0" || strings.HasPrefix(info[i+1], "-") {
				t.Errorf("%s has no %s limit: %v", service, what, info)
			}
		}
		if service == "prometheus" {
			if len(info) < 5 || info[4] != "65534:65534" {
				t.Errorf("prometheus runs as %v, want nobody", info[4:])
			}
			continue
		}
		if service == "postgres" {
			if len(info) < 5 || info[4] != "postgres" {
				t.Errorf("postgres runs as %v, want the postgres user", info[4:])
			}
			continue
		}
		if service == "redis" {
			redis = id
			if len(info) < 5 || info[4] != "redis" {
				t.Errorf("redis runs as %v, want the redis user", info[4:])
			}
			continue
		}
		out, err := exec.Command("docker", "cp", id+":/etc/ssl/certs/ca-certificates.crt", "-").Output()
		if err != nil {
			t.Errorf("%s has no CA certificates: %v", service, err)
			continue
		}
		tr := tar.NewReader(bytes.NewReader(out))
		if h, err := tr.Next(); err != nil || h.Size < 1000 {
			t.Errorf("%s's CA certificates: %v %v", service, h, err)
		} else if pem, _ := io.ReadAll(tr); !bytes.Contains(pem, []byte("BEGIN CERTIFICATE")) {
			t.Errorf("%s's CA certificates are no PEM", service)
		}
	}
	if redis == "" {
		t.Fatal("no redis container")
	}
	// As the gateway: reads are fine, writes are refused. Without a user: nothing.
	cli := func(args ...string) string {
		out, _ := exec.Command("docker", append([]string{"exec", "-e", "REDISCLI_AUTH=", redis, "redis-cli"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	var gw string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "REDIS_PASSWORD_GATEWAY="); ok {
			gw = v
		}
	}
	if out := cli("--user", "gateway", "--pass", gw, "--no-auth-warning", "smembers", "{customer}:customer_ids"); strings.Contains(out, "ERR") || strings.Contains(out, "NOPERM") {
		t.Errorf("the gateway's SMEMBERS: %s", out)
	}
	if out := cli("--user", "gateway", "--pass", gw, "--no-auth-warning", "sadd", "{customer}:customer_ids", "x"); !strings.Contains(out, "NOPERM") {
		t.Errorf("the gateway's SADD: %s, want NOPERM", out)
	}
	if out := cli("ping"); !strings.Contains(out, "NOAUTH") {
		t.Errorf("PING without a user: %s, want NOAUTH", out)
	}
}

// checkPrometheus checks that Prometheus listens on 127.0.0.1 only and
// scrapes every service's /metrics with the admin token: each target is up.
func (s stack) checkPrometheus(t *testing.T) {
	t.Helper()
	port := envOr("PROMETHEUS_PORT", "9090")
	if got := s.run(t, "port", "prometheus", "9090"); strings.TrimSpace(got) != "127.0.0.1:"+port {
		t.Errorf("prometheus is published on %q, want 127.0.0.1:%s only", got, port)
	}
	var seen string
	redistest.Eventually(t, time.Minute, "every service scraped", func() bool {
		resp, err := http.Get("http://127.0.0.1:" + port + "/api/v1/targets")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var targets struct {
			Data struct {
				ActiveTargets []struct {
					ScrapeURL, Health, LastError string
				}
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
			return false
		}
		up := 0
		seen = ""
		for _, tg := range targets.Data.ActiveTargets {
			seen += fmt.Sprintf("\n%s %s %s", tg.ScrapeURL, tg.Health, tg.LastError)
			if tg.Health == "up" {
				up++
			}
		}
		return up == 9
	})
	for _, name := range []string{"customer", "product", "inventory", "order", "billing", "crm", "msg", "archive", "gateway"} {
		if !strings.Contains(seen, "http://"+name+":9000/metrics ") {
			t.Errorf("prometheus does not scrape %s:%s", name, seen)
		}
	}
}

// waitHealthy polls docker's health status of the project's containers.
func (s stack) waitHealthy(t *testing.T, want int) {
	t.Helper()
	var status string
	redistest.Eventually(t, 3*time.Minute, fmt.Sprintf("%d healthy containers", want), func() bool {
		ids := s.containers(t, "")
		if len(ids) < want {
			return false
		}
		status = docker(t, append([]string{"inspect", "-f", "{{.Name}} {{.State.Health.Status}}"}, ids...)...)
		return strings.Count(status, " healthy") == want
	})
	resp, err := http.Get("http://127.0.0.1:" + envOr("GATEWAY_ADMIN_PORT", "9000") + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("gateway not ready: %v (%s)", err, status)
	}
	resp.Body.Close()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
