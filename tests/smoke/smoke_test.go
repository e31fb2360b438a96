// Package smoke brings the stack up with docker-compose.yml from a clean
// state, as the README's run command does, and walks the original scenario
// against 127.0.0.1:5000 (GATEWAY_PORT), with CRM stopped and started on the
// way; the gateway's admin listener is on 127.0.0.1:9000 (GATEWAY_ADMIN_PORT). It tears everything down, volumes included, even when it fails.
package smoke

import (
	"fmt"
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

// compose runs scripts/compose.sh on the smoke project with the local images.
func compose(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("scripts/compose.sh", append([]string{"-p", project, "--env-file", "local.env"}, args...)...)
	cmd.Dir = "../.."
	// The scenario's polls from one address would go over the gateway's limit.
	cmd.Env = append(os.Environ(), "RATE_LIMIT=0")
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
	waitHealthy(t, 9)
	t.Logf("stack healthy %v after up", time.Since(start).Round(time.Second))

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
