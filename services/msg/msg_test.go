package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	pgtest.Stop()
	os.Exit(code)
}

type email struct {
	ID, Key, To, Msg string
}

func TestSendListAndGet(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "msg", platformtest.Config(t), config{MailRetention: time.Hour}, wire)
	var first, again, other sent
	platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "Welcome", Key: "e1:welcome"}, 200, &first)
	platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "Welcome", Key: "e1:welcome"}, 200, &again)
	platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "bob@example.com", Msg: "Goodbye", Key: "e2:goodbye"}, 200, &other)
	if !first.Sent || again.Sent || !other.Sent {
		t.Fatalf("sent flags %v %v %v, want true false true", first, again, other)
	}
	if first.ID != shop.EmailID("e1:welcome") || again.ID != first.ID || other.ID == first.ID {
		t.Fatalf("ids %s %s %s", first.ID, again.ID, other.ID)
	}
	var got email
	platformtest.JSON(t, "GET", srv.URL+"/emails/"+first.ID, nil, 200, &got)
	if got != (email{ID: first.ID, Key: "e1:welcome", To: "ada@example.com", Msg: "Welcome"}) {
		t.Fatalf("email %+v", got)
	}
	var all, ada, none []email
	platformtest.JSON(t, "GET", srv.URL+"/emails", nil, 200, &all)
	platformtest.JSON(t, "GET", srv.URL+"/emails?to=ada@example.com", nil, 200, &ada)
	platformtest.JSON(t, "GET", srv.URL+"/emails?to=cy@example.com", nil, 200, &none)
	if len(all) != 2 || len(ada) != 1 || ada[0].Key != "e1:welcome" || none == nil || len(none) != 0 {
		t.Fatalf("all %v, to ada %v, to cy %v", all, ada, none)
	}
}

// ?to= answers one recipient's mails from an index: with 2,000 mails to
// others in the cache it reads the index and the recipient's mails, one
// command each, and nothing else. It pages as every list does.
func TestMailsToOneRecipientReadOnlyTheirs(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), config{MailRetention: time.Hour}, wire)
	for i := range 2000 {
		m, err := shop.NewEmail(fmt.Sprint("x", i%50, "@example.com"), "hi", fmt.Sprint("other:", i))
		if err != nil {
			t.Fatal(err)
		}
		platformtest.Created(t, app.Cache, shop.Emails.Kind, m)
	}
	want := map[string]bool{}
	for i := range 3 {
		var s sent
		platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "hi", Key: fmt.Sprint("ada:", i)}, 200, &s)
		want[s.ID] = true
	}
	var ada []email
	// Once before counting: a connection the client dials sends commands of its own.
	platformtest.JSON(t, "GET", srv.URL+"/emails?to=ada@example.com", nil, 200, &ada)
	var commands atomic.Int64
	app.Store.Redis().AddHook(commandsSent{&commands})
	platformtest.JSON(t, "GET", srv.URL+"/emails?to=ada@example.com", nil, 200, &ada)
	if len(ada) != 3 || !want[ada[0].ID] || !want[ada[1].ID] || !want[ada[2].ID] || ada[0].To != "ada@example.com" {
		t.Fatalf("ada's mails %v, want the 3 sent to her", ada)
	}
	if n, want := commands.Load(), int64(app.Config.Partitions+3); n > want {
		t.Fatalf("?to= sent %d commands among 2,003 mails, want %d: the index of each partition and ada's 3 mails", n, want)
	}
	pages := platformtest.Pages(t, srv.URL+"/emails?to=ada@example.com&limit=2")
	if len(pages) != 2 || len(pages[0]) != 2 || len(pages[1]) != 1 || pages[0][0]["id"] != ada[0].ID || pages[1][0]["id"] != ada[2].ID {
		t.Fatalf("ada's mails in pages of 2: %v", pages)
	}
}

// commandsSent counts the commands a client sends.
type commandsSent struct{ n *atomic.Int64 }

func (commandsSent) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h commandsSent) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h commandsSent) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestConcurrentSendsOfOneKeySendOnce(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), config{MailRetention: time.Hour}, wire)
	var wg sync.WaitGroup
	answers := make([]sent, 20)
	for i := range answers {
		wg.Go(func() {
			platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: fmt.Sprint("try ", i), Key: "k"}, 200, &answers[i])
		})
	}
	wg.Wait()
	n := 0
	for _, a := range answers {
		if a.Sent {
			n++
		}
		if a.ID != shop.EmailID("k") {
			t.Fatalf("answer %+v", a)
		}
	}
	var all []email
	platformtest.JSON(t, "GET", srv.URL+"/emails", nil, 200, &all)
	info, err := app.Store.Info(t.Context(), app.Store.PartitionOf("email", shop.EmailID("k")))
	if n != 1 || len(all) != 1 || err != nil || info.Length != 1 {
		t.Fatalf("%d sends answered sent, %d listed, %d events (%v); want 1 each", n, len(all), info.Length, err)
	}
}

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), config{MailRetention: time.Hour}, wire)
	var s sent
	platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "hi", Key: "k"}, 200, &s)
	cases := []platformtest.BadRequest{
		platformtest.Bad("malformed JSON", "POST", "/email", `{"to": "a@b.c",`, 400),
		platformtest.Bad("empty body", "POST", "/email", ``, 400),
		platformtest.Bad("not an object", "POST", "/email", `["a@b.c"]`, 400),
		platformtest.Bad("missing to", "POST", "/email", `{"msg": "hi", "key": "k2"}`, 400),
		platformtest.Bad("empty to", "POST", "/email", `{"to": "", "msg": "hi", "key": "k2"}`, 400),
		platformtest.Bad("to not an address", "POST", "/email", `{"to": "ada", "msg": "hi", "key": "k2"}`, 400),
		platformtest.Bad("to with a name", "POST", "/email", `{"to": "Ada <a@b.c>", "msg": "hi", "key": "k2"}`, 400),
		platformtest.Bad("missing msg", "POST", "/email", `{"to": "a@b.c", "key": "k2"}`, 400),
		platformtest.Bad("blank msg", "POST", "/email", `{"to": "a@b.c", "msg": " ", "key": "k2"}`, 400),
		platformtest.Bad("missing key", "POST", "/email", `{"to": "a@b.c", "msg": "hi"}`, 400),
		platformtest.Bad("empty key", "POST", "/email", `{"to": "a@b.c", "msg": "hi", "key": ""}`, 400),
		platformtest.Bad("wrong type", "POST", "/email", `{"to": "a@b.c", "msg": 5, "key": "k2"}`, 400),
		platformtest.Bad("unknown field", "POST", "/email", `{"to": "a@b.c", "msg": "hi", "key": "k2", "cc": "x"}`, 400),
		platformtest.Bad("trailing data", "POST", "/email", `{"to": "a@b.c", "msg": "hi", "key": "k2"} {}`, 400),
		platformtest.Bad("too large", "POST", "/email", `{"to": "a@b.c", "key": "k2", "msg": "`+strings.Repeat("x", 70<<10)+`"}`, 413),
		platformtest.Bad("non-UUID id", "GET", "/emails/42", nil, 400),
		platformtest.Bad("unknown id", "GET", "/emails/"+shop.EmailID("nope"), nil, 404),
		platformtest.Bad("wrong method on send", "GET", "/email", nil, 405),
		platformtest.Bad("wrong method on mails", "DELETE", "/emails/"+s.ID, nil, 405),
		platformtest.Bad("no such route", "GET", "/nothing", nil, 404),
	}
	platformtest.RejectAll(t, app, srv.URL, "email", cases)
}

// Mails sent before the retention are forgotten: their records, and their
// recipients' index, leave the cache, once, whatever pass forgets them; one
// sent since stays. A mail forgotten is still not sent again for its key.
func TestOldMailsAreForgottenAndStillSentOnce(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), config{MailRetention: time.Hour}, wire)
	for i := range 3 {
		platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "Hi", Key: fmt.Sprint("old:", i)}, 200, nil)
	}
	cut := time.Now().Add(time.Millisecond)
	redistest.Eventually(t, 5*time.Second, "a millisecond past the cut", func() bool { return time.Now().After(cut) })
	var recent sent
	platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "Hi", Key: "new"}, 200, &recent)

	if n, err := forgetBefore(t.Context(), app.Cache, cut); err != nil || n != 3 {
		t.Fatalf("forgot %d (%v), want the 3 sent before the cut", n, err)
	}
	if n, err := forgetBefore(t.Context(), app.Cache, cut); err != nil || n != 0 {
		t.Fatalf("a second pass forgot %d (%v), want 0", n, err)
	}
	app.Redis.Del(t.Context(), app.Store.Key(app.Store.FirstPartition("email"), "forgotten_up_to"))
	if n, err := forgetBefore(t.Context(), app.Cache, cut); err != nil || n != 0 {
		t.Fatalf("a pass that lost its place forgot %d (%v), want 0", n, err)
	}
	for _, path := range []string{"/emails", "/emails?to=ada@example.com"} {
		var left []email
		platformtest.JSON(t, "GET", srv.URL+path, nil, 200, &left)
		if len(left) != 1 || left[0].ID != recent.ID {
			t.Fatalf("GET %s lists %v, want only the recent mail", path, left)
		}
	}
	var again sent
	platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "Hi", Key: "old:0"}, 200, &again)
	if again.Sent {
		t.Fatal("a forgotten mail was sent again for its key")
	}
}

// Mails older than the retention are usually only in the archive, the
// stream trimmed below them: they are forgotten all the same, read from
// the archive, each once; one sent since stays.
func TestOldMailsOnlyInTheArchiveAreForgotten(t *testing.T) {
	t.Parallel()
	base := platformtest.Config(t)
	base.ArchiveURL = platformtest.ArchiveURL(t)
	app, srv := platformtest.Start(t, "msg", base, config{MailRetention: time.Hour}, wire)
	const old = 12
	for i := range old {
		platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "Hi", Key: fmt.Sprint("old:", i)}, 200, nil)
	}
	cut := time.Now().Add(time.Millisecond)
	redistest.Eventually(t, 5*time.Second, "a millisecond past the cut", func() bool { return time.Now().After(cut) })
	var recent sent
	platformtest.JSON(t, "POST", srv.URL+"/email", shop.MailRequest{To: "ada@example.com", Msg: "Hi", Key: "new"}, 200, &recent)
	if n := platformtest.ArchiveAndTrim(t, app, "email"); n < old/2 {
		t.Fatalf("the trim took %d mails out of the stream, want most of the %d old ones", n, old)
	}

	if n, err := forgetBefore(t.Context(), app.Cache, cut); err != nil || n != old {
		t.Fatalf("forgot %d (%v), want the %d sent before the cut", n, err, old)
	}
	if n, err := forgetBefore(t.Context(), app.Cache, cut); err != nil || n != 0 {
		t.Fatalf("a second pass forgot %d (%v), want 0", n, err)
	}
	var left []email
	platformtest.JSON(t, "GET", srv.URL+"/emails", nil, 200, &left)
	if len(left) != 1 || left[0].ID != recent.ID {
		t.Fatalf("GET /emails lists %v, want only the recent mail", left)
	}
}
