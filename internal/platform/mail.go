package platform

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Mailer asks the msg service to send mails about events.
type Mailer struct {
	HTTP *http.Client
	URL  string // of msg
}

// Mail sends a mail to a customer. Its key is the event's id and the kind of
// mail, so that msg sends it once however often the event comes.
func (m Mailer) Mail(ctx context.Context, e eventstore.Event, kind string, customer entitycache.Entity, text string) error {
	to, _ := customer["email"].(string)
	if to == "" {
		return fmt.Errorf("event %s: no email to send the %s mail to", e.ID, kind)
	}
	return Call(ctx, m.HTTP, http.MethodPost, strings.TrimSuffix(m.URL, "/")+"/email",
		map[string]string{"to": to, "msg": text, "key": e.ID + ":" + kind}, nil)
}

// CustomerOf reads the customer of an order from the cache. One that is gone
// (deleted since the order) is an error: there is no address to mail, and
// the event ends up where an operator sees it.
func CustomerOf(ctx context.Context, cache *entitycache.Cache, order entitycache.Entity) (entitycache.Entity, error) {
	id, _ := order["customer_id"].(string)
	if id == "" {
		return nil, fmt.Errorf("order %v has no customer_id", order["id"])
	}
	c, _, err := cache.Get(ctx, Customers.Kind, id)
	if err == nil && c == nil {
		err = fmt.Errorf("customer %s of order %v is unknown", id, order["id"])
	}
	return c, err
}
