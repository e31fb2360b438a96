package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

type sent struct {
	ID   string `json:"id"`
	Sent bool   `json:"sent"`
}

// send records the mail under the id its key derives, in one round trip.
// Expecting no entity there makes the record the lock: of two sends of one
// key, also at once, the second loses the append and sends nothing.
func send(ctx context.Context, cache *entitycache.Cache, log *slog.Logger, mail shop.Email) (sent, error) {
	_, err := cache.Commit(ctx, shop.Emails.Change(shop.EmailSent, mail, eventstore.NoEntity))
	if errors.Is(err, eventstore.ErrConflict) {
		return sent{ID: mail.ID}, nil
	}
	if err != nil {
		return sent{}, err
	}
	log.InfoContext(ctx, "mail sent", "id", mail.ID, "key", mail.Key, "to", mail.To, "msg", mail.Msg,
		"traceparent", platform.TraceParent(ctx))
	return sent{ID: mail.ID, Sent: true}, nil
}

type config struct {
	// MailRetention is how long a mail's record is kept (forget.go).
	MailRetention time.Duration `envconfig:"MAIL_RETENTION" default:"168h"`
}

func wire(app *platform.App, cfg config) error {
	if cfg.MailRetention <= 0 {
		return fmt.Errorf("MAIL_RETENTION must be above 0, not %v", cfg.MailRetention)
	}
	app.Go(func(ctx context.Context) error { return forget(ctx, app.Cache, app.Log, cfg.MailRetention) })
	app.Router.Post("/email", platform.Handle(func(r *http.Request) (any, error) {
		var b shop.MailRequest
		if err := platform.Decode(r, &b); err != nil {
			return nil, err
		}
		mail, err := shop.NewEmail(b.To, b.Msg, b.Key)
		if err != nil {
			return nil, err
		}
		return send(r.Context(), app.Cache, app.Log, mail)
	}))
	// ?to= reads the recipient's index, not every mail.
	app.Router.Get("/emails", platform.List(func(r *http.Request, p entitycache.Page) ([]shop.Email, string, error) {
		if to := r.URL.Query().Get("to"); to != "" {
			return shop.Emails.ListBy(r.Context(), app.Cache, to, p)
		}
		return shop.Emails.ListPage(r.Context(), app.Cache, p)
	}))
	app.Router.Get("/emails/{id}", platform.Handle(func(r *http.Request) (any, error) {
		id, err := platform.ParseID(r)
		if err != nil {
			return nil, err
		}
		m, _, err := shop.Emails.Get(r.Context(), app.Cache, id)
		if err == nil && m == nil {
			err = &entitycache.NotFoundError{Kind: shop.Emails.One, ID: id}
		}
		return m, err
	}))
	return nil
}
