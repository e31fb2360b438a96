package platform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	pgtest.Stop()
	os.Exit(code)
}

// adminPaths are the paths only the admin listener serves.
var adminPaths = []string{"/healthz", "/readyz", "/debug/pprof/", "/debug/pprof/goroutine", "/ops/stats", "/ops/deadletters"}

func TestTheAPIServesNothingAdminAndTheAdminListenerDoes(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "plain", platformtest.Config(t), platform.NoConfig{}, func(app *platform.App, _ platform.NoConfig) error {
		app.Admin.Get("/ops/stats", platform.Handle(func(*http.Request) (any, error) { return "stats", nil }))
		return nil
	})
	for _, path := range adminPaths {
		platformtest.Rejected(t, "GET", srv.URL+path, nil, http.StatusNotFound)
	}
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/", "/ops/stats"} {
		if status, body := platformtest.Do(t, "GET", srv.Admin.URL+path, nil); status != http.StatusOK {
			t.Errorf("admin %s: %d %s", path, status, body)
		}
	}
}

func TestAnAdminTokenGuardsAllButTheProbes(t *testing.T) {
	t.Parallel()
	base := platformtest.Config(t)
	base.AdminToken = "s3cret"
	_, srv := platformtest.Start(t, "guarded", base, platform.NoConfig{}, func(*platform.App, platform.NoConfig) error { return nil })
	get := func(path, auth string) *http.Response {
		req, _ := http.NewRequest("GET", srv.Admin.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp := get(path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", path, resp.StatusCode)
		}
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret2", "s3cret", "Basic czNjcmV0"} {
		resp := get("/debug/pprof/", auth)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("pprof with %q: %d, WWW-Authenticate %q; want 401 and Bearer", auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	platformtest.Rejected(t, "GET", srv.Admin.URL+"/debug/pprof/", nil, http.StatusUnauthorized)
	if resp := get("/debug/pprof/", "Bearer s3cret"); resp.StatusCode != http.StatusOK {
		t.Errorf("pprof with the token: %d, want 200", resp.StatusCode)
	}
}

func TestAHandlerThatPanicsAnswersAJSON500(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "panics", platformtest.Config(t), platform.NoConfig{}, func(app *platform.App, _ platform.NoConfig) error {
		app.Router.Get("/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
		app.Admin.Get("/ops/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
		return nil
	})
	for _, url := range []string{srv.URL + "/boom", srv.Admin.URL + "/ops/boom"} {
		if msg := platformtest.Rejected(t, "GET", url, nil, http.StatusInternalServerError); msg != "internal error" {
			t.Errorf("%s: %q, want internal error", url, msg)
		}
	}
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func TestEachRequestIsLoggedWithItsRouteStatusAndTrace(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Client(t)
	var logs logBuffer
	app := platform.NewApp("logged", platformtest.Config(t), rdb, slog.New(slog.NewJSONHandler(&logs, nil)))
	app.Router.Get("/things/{id}", platform.Handle(func(*http.Request) (any, error) { return "thing", nil }))
	api, admin := httptest.NewServer(app.Router), httptest.NewServer(app.Admin)
	defer api.Close()
	defer admin.Close()

	req, _ := http.NewRequest("GET", api.URL+"/things/42", nil)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	platformtest.Do(t, "GET", admin.URL+"/healthz", nil) // Debug: not at Info
	platformtest.Do(t, "GET", admin.URL+"/debug/pprof/", nil)

	lines := logs.lines("request")
	if len(lines) != 2 {
		t.Fatalf("%d request lines, want 2 (none for /healthz): %v", len(lines), lines)
	}
	l := lines[0]
	if l["method"] != "GET" || l["route"] != "/things/{id}" || l["status"] != float64(200) || l["bytes"] != float64(8) ||
		l["trace_id"] != "0af7651916cd43dd8448eb211c80319c" || l["duration"] == nil {
		t.Errorf("log line %v", l)
	}
	if lines[1]["route"] != "/debug/pprof/*" || lines[1]["status"] != float64(200) {
		t.Errorf("admin log line %v", lines[1])
	}
}

func TestReadyzWithRedisGoneShowsNoErrorText(t *testing.T) {
	t.Parallel()
	server := redistest.NewServer(t)
	var logs logBuffer
	app := platform.NewApp("orphan", platformtest.Config(t), server.Client(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	admin := httptest.NewServer(app.Admin)
	defer admin.Close()
	platformtest.JSON(t, "GET", admin.URL+"/readyz", nil, http.StatusOK, nil)
	server.Stop(t)
	status, body := platformtest.Do(t, "GET", admin.URL+"/readyz", nil)
	if status != http.StatusServiceUnavailable || strings.TrimSpace(string(body)) != `{"error":"redis unreachable"}` {
		t.Fatalf("/readyz with Redis gone: %d %s, want 503 and redis unreachable only", status, body)
	}
	if l := logs.lines("not ready"); len(l) != 1 || !strings.Contains(l[0]["err"].(string), "redis unreachable: ") {
		t.Fatalf("the cause is not logged: %v", l)
	}
}

// A Redis that refuses the service's user is unavailable to the client, not
// an internal error: 503, with nothing of Redis's answer.
func TestRedisAuthAndPermissionErrorsAre503(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Client(t)
	user := "u" + strings.ReplaceAll(uuid.NewString(), "-", "")
	if err := rdb.Do(t.Context(), "ACL", "SETUSER", user, "on", ">pw", "-@all", "+auth", "+hello").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(t.Context(), "ACL", "DELUSER", user) })
	addr := rdb.(*redis.Client).Options().Addr // a test of one server
	denied := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: "pw"})
	wrong := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: "nope", MaxRetries: -1})
	defer denied.Close()
	defer wrong.Close()
	for name, err := range map[string]error{
		"NOPERM":    denied.Get(t.Context(), "k").Err(),
		"WRONGPASS": wrong.Get(t.Context(), "k").Err(),
	} {
		if err == nil || errors.Is(err, redis.Nil) {
			t.Fatalf("%s: no error", name)
		}
		status, msg, logged := platform.StatusOf(err)
		if status != http.StatusServiceUnavailable || strings.Contains(msg, user) || !logged {
			t.Errorf("%s (%v): %d %q logged %v, want 503 and logged", name, err, status, msg, logged)
		}
	}
}

// A response that lasts until the app stops (an event stream) ends when the
// graceful stop begins, instead of holding it until its deadline; a public
// admin path needs no token.
func TestAStopEndsResponsesThatWaitForIt(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Client(t)
	cfg := platformtest.Config(t)
	cfg.Addr, cfg.AdminAddr, cfg.AdminToken, cfg.ShutdownTimeout = freeAddr(t), freeAddr(t), "s3cret", 5*time.Second
	app := platform.NewApp("streams", cfg, rdb, slog.Default())
	app.AdminPublic("/forever", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		select {
		case <-app.Stopping():
		case <-r.Context().Done():
		}
	})
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- app.Serve(ctx) }()
	var resp *http.Response
	redistest.Eventually(t, 10*time.Second, "the admin listener up", func() bool {
		var err error
		resp, err = http.Get("http://" + cfg.AdminAddr + "/forever")
		return err == nil
	})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /forever without the token: %d, want 200", resp.StatusCode)
	}
	began := time.Now()
	stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v after %v, want a graceful stop", err, time.Since(began))
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("the stop took %v", took)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
