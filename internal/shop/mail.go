package shop

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/ordershop/ordershop/pkg/groupcommit"
)

// Mailer asks the msg service to send mails about events, to customers it
// reads from the cache. Its mails go to msg together: while two requests
// are in flight, the mails that come wait and go in the next (see
// groupcommit), so that handlers that mail at once, as several consumer
// workers do, cost msg one request for many mails.
type Mailer struct {
	Cache *entitycache.Cache
	sends *groupcommit.Queue[Mail, struct{}]
}

// Mail is a mail as msg's POST /emails takes it, with the trace of the
// event it is sent for: mails of many traces go in one request.
type Mail struct {
	To          string `json:"to"`
	Msg         string `json:"msg"`
	Key         string `json:"key"`
	TraceParent string `json:"traceparent,omitempty"`
}

// MailAnswer is msg's answer for each mail of a POST /emails: the mail's
// id and whether it was sent now (not before), or the error that kept it
// from being recorded.
type MailAnswer struct {
	ID    string `json:"id,omitempty"`
	Sent  bool   `json:"sent"`
	Error string `json:"error,omitempty"`
}

// maxMails bounds the mails of one request to msg.
const maxMails = 100

// MailerOf is the mailer of a service's app.
func MailerOf(app *platform.App, msgURL string) Mailer {
	return newMailer(app.Cache, app.HTTP, msgURL)
}

func newMailer(cache *entitycache.Cache, client *http.Client, msgURL string) Mailer {
	url := strings.TrimSuffix(msgURL, "/") + "/emails"
	return Mailer{Cache: cache, sends: &groupcommit.Queue[Mail, struct{}]{MaxRuns: 2, MaxSize: maxMails,
		Run: func(ctx context.Context, calls []*groupcommit.Call[Mail, struct{}]) {
			sendMails(ctx, client, url, calls)
		}}}
}

// Mail sends a mail to a customer. Its idempotency key is once (what the
// mail is sent once for, mostly the event's id) and the kind of mail, so
// that msg sends it once however often the event comes. A mail msg would
// refuse is refused here, before it goes with others.
func (m Mailer) Mail(ctx context.Context, once, kind string, to Customer, text string) error {
	if to.Email == "" {
		return fmt.Errorf("%s: no email to send the %s mail to", once, kind)
	}
	mail := Mail{To: to.Email, Msg: text, Key: once + ":" + kind, TraceParent: platform.TraceParent(ctx)}
	if _, err := NewEmail(mail.To, mail.Msg, mail.Key); err != nil {
		return fmt.Errorf("%s: the %s mail: %w", once, kind, err)
	}
	_, err := m.sends.Do(ctx, mail)
	return err
}

// sendMails sends the mails of calls to msg in one request and sets the
// error of each: msg's for the mail, or the request's.
func sendMails(ctx context.Context, client *http.Client, url string, calls []*groupcommit.Call[Mail, struct{}]) {
	mails := make([]Mail, len(calls))
	for i, c := range calls {
		mails[i] = c.In
	}
	var answers []MailAnswer
	err := platform.Call(ctx, client, http.MethodPost, url, mails, &answers)
	if err == nil && len(answers) != len(calls) {
		err = fmt.Errorf("%w: msg answered %d mails of %d", platform.ErrUnavailable, len(answers), len(calls))
	}
	for i, c := range calls {
		switch {
		case err != nil:
			c.Err = err
		case answers[i].Error != "":
			c.Err = fmt.Errorf("%w: mail %s: %s", platform.ErrUnavailable, c.In.Key, answers[i].Error)
		default:
			c.Err = nil
		}
	}
}

// CustomerOf reads the customer of an order from the cache. One that is gone
// (deleted since the order) is a skip (eventstore.ErrSkip): there is no
// address to mail, now or ever, so retrying or dead-lettering the event
// would only fail the same way.
func (m Mailer) CustomerOf(ctx context.Context, order Order) (Customer, error) {
	if order.CustomerID == "" {
		return Customer{}, fmt.Errorf("order %s has no customer_id", order.ID)
	}
	c, _, err := Customers.Get(ctx, m.Cache, order.CustomerID)
	if err == nil && c == nil {
		err = eventstore.Skip(fmt.Errorf("customer %s of order %s is unknown", order.CustomerID, order.ID))
	}
	if err != nil {
		return Customer{}, err
	}
	return *c, nil
}
