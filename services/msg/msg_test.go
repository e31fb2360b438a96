package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

type email struct {
	ID, Key, To, Msg string
}

func TestSendListAndGet(t *testing.T) {
	t.Parallel()
	_, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	var first, again, other shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "Welcome", Key: "e1:welcome"}, 200, &first)
	platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "Welcome", Key: "e1:welcome"}, 200, &again)
	platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "bob@example.com", Msg: "Goodbye", Key: "e2:goodbye"}, 200, &other)
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
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	for i := range 2000 {
		m, err := shop.NewEmail(fmt.Sprint("x", i%50, "@example.com"), "hi", fmt.Sprint("other:", i))
		if err != nil {
			t.Fatal(err)
		}
		platformtest.Created(t, app.Cache, shop.Emails.Kind, m)
	}
	want := map[string]bool{}
	for i := range 3 {
		var s shop.MailAnswer
		platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "hi", Key: fmt.Sprint("ada:", i)}, 200, &s)
		want[s.ID] = true
	}
	var ada []email
	// Once before counting: a connection the client dials sends commands of its own.
	platformtest.JSON(t, "GET", srv.URL+"/emails?to=ada@example.com", nil, 200, &ada)
	var commands atomic.Int64
	app.Store.Redis().AddHook(commandsSent{n: &commands})
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

// commandsSent counts the commands a client sends, those named name if it
// is not "".
type commandsSent struct {
	n    *atomic.Int64
	name string
}

func (commandsSent) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h commandsSent) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.name == "" || cmd.Name() == h.name {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h commandsSent) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if h.name == "" || cmd.Name() == h.name {
				h.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

func TestConcurrentSendsOfOneKeySendOnce(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	var wg sync.WaitGroup
	answers := make([]shop.MailAnswer, 20)
	for i := range answers {
		wg.Go(func() {
			platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: fmt.Sprint("try ", i), Key: "k"}, 200, &answers[i])
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
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	var s shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "hi", Key: "k"}, 200, &s)
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

// emailEvents are the events of every partition of the email stream.
func emailEvents(t *testing.T, app *platform.App) []eventstore.Event {
	t.Helper()
	var all []eventstore.Event
	if err := app.Store.ReplayAll(t.Context(), "email", func(events []eventstore.Event) error {
		all = append(all, events...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

// wantSent fails the test unless answers are the mails of keys in their
// order, sent as flags say.
func wantSent(t *testing.T, answers []shop.MailAnswer, keys []string, flags ...bool) {
	t.Helper()
	if len(answers) != len(keys) {
		t.Fatalf("%d answers %v for %d mails", len(answers), answers, len(keys))
	}
	for i, a := range answers {
		if a != (shop.MailAnswer{ID: shop.EmailID(keys[i]), Sent: flags[i]}) {
			t.Fatalf("answer %d is %+v, want id of %q and sent %v (answers %v)", i, a, keys[i], flags[i], answers)
		}
	}
}

func TestBulkSendRecordsEachMailOnce(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	mails := []shop.Mail{
		{To: "ada@example.com", Msg: "Welcome", Key: "b1:welcome"},
		{To: "bob@example.com", Msg: "Receipt", Key: "b2:receipt"},
		{To: "ada@example.com", Msg: "Thanks", Key: "b3:thanks"},
		{To: "cy@example.com", Msg: "Goodbye", Key: "b4:goodbye"},
	}
	keys := []string{"b1:welcome", "b2:receipt", "b3:thanks", "b4:goodbye"}
	var first, again []shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/emails", mails, 200, &first)
	wantSent(t, first, keys, true, true, true, true)
	var all []email
	platformtest.JSON(t, "GET", srv.URL+"/emails", nil, 200, &all)
	events := emailEvents(t, app)
	if len(all) != len(mails) || len(events) != len(mails) {
		t.Fatalf("%d mails listed, %d events, want %d each", len(all), len(events), len(mails))
	}
	for i, m := range mails {
		var got email
		platformtest.JSON(t, "GET", srv.URL+"/emails/"+first[i].ID, nil, 200, &got)
		if got != (email{ID: first[i].ID, Key: m.Key, To: m.To, Msg: m.Msg}) {
			t.Fatalf("mail %d is %+v, want %+v", i, got, m)
		}
	}
	platformtest.JSON(t, "POST", srv.URL+"/emails", mails, 200, &again)
	wantSent(t, again, keys, false, false, false, false)
	if n := len(emailEvents(t, app)); n != len(mails) {
		t.Fatalf("the same bulk send again wrote %d events", n-len(mails))
	}
}

// The mails of a bulk send are recorded together: one script run for those
// of each stream partition.
func TestBulkSendRecordsItsMailsInOneRunAPartition(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	var s shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "hi", Key: "first"}, 200, &s) // loads the script
	var mails []shop.Mail
	parts := map[string]bool{}
	for i := range 8 {
		key := fmt.Sprint("run:", i)
		mails = append(mails, shop.Mail{To: fmt.Sprint("c", i, "@example.com"), Msg: "hi", Key: key})
		parts[app.Store.PartitionOf("email", shop.EmailID(key))] = true
	}
	var commands atomic.Int64
	app.Store.Redis().AddHook(commandsSent{&commands, "evalsha"})
	var answers []shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/emails", mails, 200, &answers)
	if n := commands.Load(); n != int64(len(parts)) {
		t.Fatalf("8 mails in %d partitions ran the script %d times, want once each", len(parts), n)
	}
	if len(answers) != 8 || !answers[7].Sent || len(emailEvents(t, app)) != 9 {
		t.Fatalf("answers %v", answers)
	}
}

// A bulk send of mails some of whose keys were sent before, by POST /email
// or by another mail of the same request, sends each key once.
func TestBulkSendOfNewAndSentKeys(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	var s shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "Welcome", Key: "old"}, 200, &s)
	var answers []shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/emails", []shop.Mail{
		{To: "ada@example.com", Msg: "Welcome", Key: "old"},
		{To: "bob@example.com", Msg: "Welcome", Key: "new"},
	}, 200, &answers)
	wantSent(t, answers, []string{"old", "new"}, false, true)
	platformtest.JSON(t, "POST", srv.URL+"/emails", []shop.Mail{
		{To: "cy@example.com", Msg: "Receipt", Key: "twice"},
		{To: "cy@example.com", Msg: "Receipt", Key: "twice"},
	}, 200, &answers)
	if len(answers) != 2 || answers[0].Sent == answers[1].Sent || answers[0].ID != shop.EmailID("twice") || answers[1].ID != answers[0].ID {
		t.Fatalf("a key twice in one request answered %v, want it sent once", answers)
	}
	if n := len(emailEvents(t, app)); n != 3 {
		t.Fatalf("%d events, want 3: old, new and twice", n)
	}
}

func TestBulkSendBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	var s shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "hi", Key: "k"}, 200, &s)
	valid := func(key string) shop.Mail { return shop.Mail{To: "ada@example.com", Msg: "hi", Key: key} }
	tooMany := make([]shop.Mail, platformtest.MaxBatch+1)
	for i := range tooMany {
		tooMany[i] = valid(fmt.Sprint("many:", i))
	}
	for _, c := range []struct {
		name   string
		body   any
		status int
		says   string // in the error
	}{
		{"empty array", `[]`, 400, "empty"},
		{"object instead of array", `{"to": "ada@example.com", "msg": "hi", "key": "k1"}`, 400, "must be a list"},
		{"malformed JSON", `[{"to": "ada@example.com", "msg": "hi", "key": "k1"},`, 400, "malformed JSON"},
		{"unknown field", `[{"to": "ada@example.com", "msg": "hi", "key": "k1"}, {"to": "ada@example.com", "msg": "hi", "key": "k2", "cc": "x"}]`,
			400, `mail 2 of 2: unknown field "cc"`},
		{"wrong type", `[{"to": "ada@example.com", "msg": 5, "key": "k1"}, {"to": "ada@example.com", "msg": "hi", "key": "k2"}]`,
			400, `mail 1 of 2: field "msg"`},
		{"invalid mail among valid ones", []shop.Mail{valid("k1"), {To: "ada", Msg: "hi", Key: "k2"}, valid("k3")},
			400, `mail 2 of 3: to "ada" is not an e-mail address`},
		{"missing key", []shop.Mail{valid("k1"), valid("k2"), {To: "ada@example.com", Msg: "hi"}},
			400, "mail 3 of 3: key is required"},
		{"invalid traceparent", []shop.Mail{valid("k1"), {To: "ada@example.com", Msg: "hi", Key: "k2", TraceParent: "00-nope"}},
			400, `mail 2 of 2: traceparent "00-nope"`},
		{"more than MAX_BATCH", tooMany, 413, fmt.Sprint("more than ", platformtest.MaxBatch)},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(emailEvents(t, app))
			if msg := platformtest.Rejected(t, "POST", srv.URL+"/emails", c.body, c.status); !strings.Contains(msg, c.says) {
				t.Errorf("error %q, want it to say %q", msg, c.says)
			}
			if after := len(emailEvents(t, app)); after != before {
				t.Errorf("bad input wrote %d events", after-before)
			}
		})
	}
}

// A mail of a bulk send that cannot be recorded answers its error alone:
// the others are recorded and answer sent, and sending all again records
// nothing twice. Here the recipient's index holds a string.
func TestBulkSendOfAMailThatCannotBeRecordedFailsItAlone(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	mails := []shop.Mail{
		{To: "ada@example.com", Msg: "hi", Key: "p1"},
		{To: "broken@example.com", Msg: "hi", Key: "p2"},
		{To: "bob@example.com", Msg: "hi", Key: "p3"},
	}
	index := app.Store.Key(app.Store.PartitionOf("email", shop.EmailID("p2")), "email_by_to:broken@example.com")
	if err := app.Store.Redis().Set(t.Context(), index, "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var answers []shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/emails", mails, 200, &answers)
	if len(answers) != 3 || answers[1].Error == "" || answers[1].Sent ||
		answers[0] != (shop.MailAnswer{ID: shop.EmailID("p1"), Sent: true}) || answers[2] != (shop.MailAnswer{ID: shop.EmailID("p3"), Sent: true}) {
		t.Fatalf("answers %+v, want p2 failed alone", answers)
	}
	platformtest.JSON(t, "POST", srv.URL+"/emails", mails, 200, &answers)
	if answers[0].Sent || answers[2].Sent || answers[1].Error == "" {
		t.Fatalf("again: answers %+v, want p1 and p3 sent before, p2 failed", answers)
	}
	var keys []string
	for _, e := range emailEvents(t, app) {
		keys = append(keys, e.EntityID)
	}
	slices.Sort(keys)
	want := []string{shop.EmailID("p1"), shop.EmailID("p3")}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("events of %v, want p1's and p3's", keys)
	}
}

// A bulk send that cannot record its mails fails as a send of one does,
// 503; sent again once Redis is back, it sends each mail once.
func TestBulkSendWithRedisGoneIs503(t *testing.T) {
	t.Parallel()
	server := redistest.NewServer(t) // its own: the test stops it
	app := platform.NewApp("msg", platformtest.Config(t), server.Client(t), slog.Default())
	if err := wire(app, platform.NoConfig{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.Router)
	defer srv.Close()
	mails := []shop.Mail{{To: "ada@example.com", Msg: "hi", Key: "r1"}, {To: "bob@example.com", Msg: "hi", Key: "r2"}}
	server.Stop(t)
	platformtest.Rejected(t, "POST", srv.URL+"/email", body{To: "ada@example.com", Msg: "hi", Key: "r1"}, http.StatusServiceUnavailable)
	platformtest.Rejected(t, "POST", srv.URL+"/emails", mails, http.StatusServiceUnavailable)
	server.Start(t)
	var answers []shop.MailAnswer
	platformtest.JSON(t, "POST", srv.URL+"/emails", mails, 200, &answers)
	wantSent(t, answers, []string{"r1", "r2"}, true, true)
	platformtest.JSON(t, "POST", srv.URL+"/emails", mails, 200, &answers)
	wantSent(t, answers, []string{"r1", "r2"}, false, false)
}

// Each mail of a bulk send is recorded in its own trace: the one its
// traceparent names, or the request's without one.
func TestBulkSendContinuesEachMailsTrace(t *testing.T) {
	t.Parallel()
	app, srv := platformtest.Start(t, "msg", platformtest.Config(t), platform.NoConfig{}, wire)
	traces := []string{
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-11111111111111111111111111111111-2222222222222222-01", // the request's
	}
	mails := []shop.Mail{
		{To: "ada@example.com", Msg: "Welcome", Key: "t1", TraceParent: traces[0]},
		{To: "bob@example.com", Msg: "Welcome", Key: "t2", TraceParent: traces[1]},
		{To: "cy@example.com", Msg: "Welcome", Key: "t3"},
	}
	status, _, data, err := platformtest.SendWith("POST", srv.URL+"/emails", mails, http.Header{"Traceparent": {traces[2]}})
	if err != nil || status != 200 {
		t.Fatalf("bulk send: %d %s %v", status, data, err)
	}
	byID := map[string]string{}
	for _, e := range emailEvents(t, app) {
		byID[e.EntityID] = e.Meta["traceparent"]
	}
	for i, m := range mails {
		if got, want := platformtest.TraceID(byID[shop.EmailID(m.Key)]), platformtest.TraceID(traces[i]); got != want {
			t.Errorf("mail %s's event has traceparent %q, want one in trace %s", m.Key, byID[shop.EmailID(m.Key)], want)
		}
	}
}
