package main

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// body is a mail to send. Key makes it idempotent: senders derive it from
// the event that caused the mail, so a redelivered event sends nothing new.
type body struct {
	To  string `json:"to"`
	Msg string `json:"msg"`
	Key string `json:"key"`
}

type sent struct {
	ID   string `json:"id"`
	Sent bool   `json:"sent"`
}

func check(b body) error {
	switch {
	case strings.TrimSpace(b.To) == "":
		return platform.Errorf(http.StatusBadRequest, "to is required")
	case strings.TrimSpace(b.Msg) == "":
		return platform.Errorf(http.StatusBadRequest, "msg is required")
	case strings.TrimSpace(b.Key) == "":
		return platform.Errorf(http.StatusBadRequest, "key is required")
	}
	return platform.CheckEmail("to", b.To)
}

// send records the mail under the id its key derives. Expecting the version
// Get saw makes the record the lock: of two sends of one key, the second
// finds the mail or loses the append, and sends nothing.
func send(ctx context.Context, app *platform.App, b body) (sent, error) {
	id := platform.DerivedID("email", b.Key)
	cur, v, err := app.Cache.Get(ctx, platform.Emails.Kind, id)
	if err != nil || cur != nil {
		return sent{ID: id}, err
	}
	_, err = app.Cache.Commit(ctx, entitycache.Change{
		Kind: platform.Emails.Kind, Type: "email_sent", ID: id, Expected: v, Meta: platform.TraceMeta(ctx),
		Entity: entitycache.Entity{"id": id, "key": b.Key, "to": b.To, "msg": b.Msg},
	})
	if errors.Is(err, eventstore.ErrConflict) {
		return sent{ID: id}, nil
	}
	if err != nil {
		return sent{}, err
	}
	app.Log.InfoContext(ctx, "mail sent", "id", id, "key", b.Key, "to", b.To, "msg", b.Msg,
		"traceparent", platform.TraceParent(ctx))
	return sent{ID: id, Sent: true}, nil
}

func wire(app *platform.App) error {
	app.Router.Post("/email", platform.Handle(func(r *http.Request) (any, error) {
		var b body
		if err := platform.Decode(r, &b); err != nil {
			return nil, err
		}
		if err := check(b); err != nil {
			return nil, err
		}
		return send(r.Context(), app, b)
	}))
	app.Router.Get("/emails", platform.Handle(func(r *http.Request) (any, error) {
		all, err := app.Cache.List(r.Context(), platform.Emails.Kind)
		to := r.URL.Query().Get("to")
		if err != nil || to == "" {
			return all, err
		}
		out := []entitycache.Entity{}
		for _, m := range all {
			if m["to"] == to {
				out = append(out, m)
			}
		}
		return out, nil
	}))
	app.Router.Get("/emails/{id}", platform.Handle(func(r *http.Request) (any, error) {
		id, err := platform.ParseID(r)
		if err != nil {
			return nil, err
		}
		m, _, err := app.Cache.Get(r.Context(), platform.Emails.Kind, id)
		if err == nil && m == nil {
			return nil, platform.Errorf(http.StatusNotFound, "no email %s", id)
		}
		return m, err
	}))
	return nil
}
