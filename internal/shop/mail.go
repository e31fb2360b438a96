package shop

import (
	"context"
	"fmt"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// MailRequest is a mail to send, as crm and billing ask the msg service for
// it and msg reads it. Key makes it idempotent: senders derive it from the
// event that caused the mail, so a redelivered event sends nothing new.
type MailRequest struct {
	To  string `json:"to"`
	Msg string `json:"msg"`
	Key string `json:"key"`
}

// Sender sends mail requests: the port of the services that mail, whose
// adapter is the msg service's HTTP client (MailerOf).
type Sender interface {
	Send(ctx context.Context, req MailRequest) error
}

// Mailer mails customers about events, to the addresses it reads from the
// cache.
type Mailer struct {
	Sender Sender
	Cache  *entitycache.Cache
}

// MailerOf is the mailer of a service's app, sending through msg's POST
// /email at msgURL.
func MailerOf(app *platform.App, msgURL string) Mailer {
	return Mailer{Sender: platform.Poster[MailRequest]{HTTP: app.HTTP, URL: strings.TrimSuffix(msgURL, "/") + "/email"},
		Cache: app.Cache}
}

// Mail sends a mail to a customer. Its idempotency key is once (what the
// mail is sent once for, mostly the event's id) and the kind of mail, so
// that msg sends it once however often the event comes.
func (m Mailer) Mail(ctx context.Context, once, kind string, to Customer, text string) error {
	if to.Email == "" {
		return fmt.Errorf("%s: no email to send the %s mail to", once, kind)
	}
	return m.Sender.Send(ctx, MailRequest{To: to.Email, Msg: text, Key: once + ":" + kind})
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
