package system

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/tests/scenario"
)

// The dashboard in a real browser (headless Chromium): a customer posted to
// the gateway appears on the page; one whose welcome mail failed appears as
// a dead letter, and the page's Replay button mails it once msg is back.
// The page sends the admin token, which it reads from its address.
// With UPDATE_SCREENSHOT=1 the screenshot replaces docs/dashboard.png (the
// README shows it); otherwise it goes to the test's temporary folder.
func TestTheDashboardInABrowser(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	token := strings.ReplaceAll(uuid.NewString(), "-", "")
	s := startSystem(t, "ADMIN_TOKEN="+token)
	g := scenario.Gateway(s.URL)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.WindowSize(1280, 1000))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(ctx)
	defer cancelTab()
	// until waits for a JavaScript condition on the page, polling every 100 ms.
	until := func(what, cond string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(100*time.Millisecond),
			chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v; the page shows:\n%s", what, err, text)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.Admin+"/#token="+token)); err != nil {
		t.Fatal(err)
	}
	until("the event stream open", `document.querySelector("#status").classList.contains("live")`)
	// No ARCHIVE_URL here: no group archive.
	until("the archive off", `document.querySelector("#archive tbody").textContent.startsWith("archiving off")`)
	until("crm's groups shown", fmt.Sprintf(`document.querySelectorAll('#groups tr[data-group="crm"]').length == %d`, 2*redistest.Partitions())) // customer and order

	ada := g.Create(t, "/customer", map[string]string{"name": "Ada Lovelace", "email": "ada@example.com"})[0]
	until("Ada's customer_created on the page", fmt.Sprintf(`document.querySelector('[data-stream*="events:{customer"] li[data-entity-id=%q][data-type="customer_created"]') !== null`, ada))

	s.Stop("msg")
	grace := g.Create(t, "/customer", map[string]string{"name": "Grace Hopper", "email": "grace@example.com"})[0]
	deadRow := fmt.Sprintf(`#dead tr[data-group="crm"][data-entity-id=%q]`, grace)
	until("Grace's welcome mail dead-lettered on the page", fmt.Sprintf(`document.querySelector(%q) !== null`, deadRow))
	s.Start("msg")
	product := g.Create(t, "/product", map[string]any{"name": "Tea", "price": 350})[0]
	g.Create(t, "/inventory", map[string]any{"product_id": product, "amount": 100})
	order := g.Create(t, "/order", map[string]any{"customer_id": ada, "product_ids": []string{product}})[0]
	g.Create(t, "/billing", map[string]any{"order_id": order})
	g.WaitMails(t, 30*time.Second, "Please pay", []string{"ada@example.com"})
	until("the billing on the page", `document.querySelector('[data-stream*="events:{billing"] li[data-type="billing_created"]') !== null`)
	until("the mails on the page", `document.querySelectorAll('[data-stream*="events:{email"] li').length >= 2`)
	until("no lag left", `[...document.querySelectorAll("#groups td.lag")].every(td => td.textContent === "0")`)
	screenshot(t, ctx)

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(deadRow+" button"))); err != nil {
		t.Fatal(err)
	}
	until("the dead letter gone after its replay", fmt.Sprintf(`document.querySelector(%q) === null`, deadRow))
	g.WaitMails(t, 10*time.Second, "Welcome", []string{"grace@example.com"})
}

func screenshot(t *testing.T, ctx context.Context) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		path = "../../docs/dashboard.png"
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// chromium is Debian's Chromium (or Chrome), else the test is skipped; with
// CI=true it fails.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "no chromium on the PATH: apt-get install chromium (.ci/run does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
