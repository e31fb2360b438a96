// Package smoke brings the stack up with docker-compose.yml from a clean
// state, as the README's run command does, and walks the original scenario
// against 127.0.0.1:5000 (GATEWAY_PORT), with CRM stopped and started on the
// way; the gateway's admin listener is on 127.0.0.1:9000 (GATEWAY_ADMIN_PORT). It tears everything down, volumes included, even when it fails.
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
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/tests/scenario"
)

// project is the smoke test's compose project; with ORDERSHOP_TAG (the tag of
// the images it runs, which wins over local.env's) it is one of that tag's
// own, so that trees tested side by side do not take each other down.
var project = "ordershop-smoke" + suffix(os.Getenv("ORDERSHOP_TAG"))

func suffix(tag string) string {
	if tag == "" || tag == "local" {
		return ""
	}
	return "-" + tag
}

// env is what compose gets beside local.env: the Redis passwords, which
// scripts/up.sh keeps in .env, of the test's own.
var env = func() []string {
	env := []string{
		"RATE_LIMIT=0", // the scenario's polls from one address would go over the gateway's limit
		"ADMIN_TOKEN=" + adminToken,
	}
	if tag := os.Getenv("ORDERSHOP_TAG"); tag != "" { // the script builds them with the tag
		env = append(env, "REDIS_IMAGE=ordershop/redis:"+tag, "PROMETHEUS_IMAGE=ordershop/prometheus:"+tag)
	}
	for _, user := range []string{"ops", "gateway", "customer", "product", "inventory", "order", "msg", "billing", "crm"} {
		b := make([]byte, 16)
		rand.Read(b)
		env = append(env, "REDIS_PASSWORD_"+strings.ToUpper(user)+"="+hex.EncodeToString(b))
	}
	return env
}()

// adminToken guards the admin listeners, and Prometheus sends it.
var adminToken = rand.Text()

// compose runs scripts/compose.sh on the smoke project with the local images,
// Prometheus's profile included.
func compose(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("scripts/compose.sh", append([]string{"-p", project, "--env-file", "local.env", "--profile", "observability"}, args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
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
	needDocker(t)
	build := exec.Command("scripts/build-local-images.sh")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the local images: %v\n%s", err, out)
	}
	port := envOr("GATEWAY_PORT", "5000")
	compose(t, "down", "-v", "--remove-orphans")
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(compose(t, "logs", "--tail", "20"))
		}
		compose(t, "down", "-v", "--remove-orphans")
		label := "label=com.docker.compose.project=" + project
		for _, kind := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"}} {
			if left := docker(t, append(kind, "--filter", label)...); left != "" {
				t.Errorf("docker %s left behind: %s", kind[0], left)
			}
		}
	})
	start := time.Now()
	compose(t, "up", "-d", "--no-build")
	waitHealthy(t, 10)
	t.Logf("stack healthy %v after up", time.Since(start).Round(time.Second))
	checkContainers(t)
	checkPrometheus(t)

	g := scenario.Gateway("http://127.0.0.1:" + port)
	scenario.Original(t, g)

	compose(t, "stop", "crm")
	_, emails := g.Customers(t, "smoke", 20)
	if n := g.CountMails(t, "Welcome"); n[emails[0]] != 0 {
		t.Fatal("a welcome mail was sent while CRM was stopped")
	}
	compose(t, "start", "crm")
	g.WaitMails(t, time.Minute, "Welcome", emails)
}

// checkContainers checks what compose gives every container: memory, CPU and
// process limits; the services' images carry the CA certificates that
// rediss:// needs; Redis runs as its own user and answers nobody unknown.
func checkContainers(t *testing.T) {
	t.Helper()
	ids := strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.compose.project="+project))
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
// scrapes every service's admin listener with the admin token: each target
// answers it, none refuses it (401). Until the services serve /metrics, a
// target answers 404.
func checkPrometheus(t *testing.T) {
	t.Helper()
	port := envOr("PROMETHEUS_PORT", "9090")
	if got := compose(t, "port", "prometheus", "9090"); strings.TrimSpace(got) != "127.0.0.1:"+port {
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
		var answered []string
		seen = ""
		for _, tg := range targets.Data.ActiveTargets {
			seen += fmt.Sprintf("\n%s %s %s", tg.ScrapeURL, tg.Health, tg.LastError)
			if tg.Health == "up" || strings.HasSuffix(tg.LastError, "404 Not Found") {
				answered = append(answered, tg.ScrapeURL)
			}
		}
		return len(answered) == 8
	})
	for _, name := range []string{"customer", "product", "inventory", "order", "billing", "crm", "msg", "gateway"} {
		if !strings.Contains(seen, "http://"+name+":9000/metrics ") {
			t.Errorf("prometheus does not scrape %s:%s", name, seen)
		}
	}
}

// waitHealthy polls docker's health status of the project's containers.
func waitHealthy(t *testing.T, want int) {
	t.Helper()
	var status string
	redistest.Eventually(t, 3*time.Minute, fmt.Sprintf("%d healthy containers", want), func() bool {
		ids := strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.compose.project="+project))
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
