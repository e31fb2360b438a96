package shop

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Mailer asks the msg service to send mails about events, to customers it
// reads from the cache.
type Mailer struct {
	HTTP  *http.Client
	URL   string // of msg
	Cache *entitycache.Cache
}

// MailerOf is the mailer of a service's app.
func MailerOf(app *platform.App, msgURL string) Mailer {
	return Mailer{HTTP: app.HTTP, URL: msgURL, Cache: app.Cache}
}

// Mail sends a mail to a customer. Its idempotency key is once (what the
// mail is sent once for, mostly the event's id) and the kind of mail, so
// that msg sends it once however often the event comes.
func (m Mailer) Mail(ctx context.Context, once, kind string, to Customer, text string) error {
	if to.Email == "" {
		return fmt.Errorf("%s: no email to send the %s mail to", once, kind)
	}
	return platform.Call(ctx, m.HTTP, http.MethodPost, strings.TrimSuffix(m.URL, "/")+"/email",
		map[string]string{"to": to.Email, "msg": text, "key": once + ":" + kind}, nil)
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
