package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
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

// traceOf is the context to record a mail of a bulk send in: ctx, or one
// that continues the mail's own trace when it names one.
func traceOf(ctx context.Context, traceparent string) (context.Context, error) {
	if traceparent == "" {
		return ctx, nil
	}
	if platform.TraceID(platform.WithTrace(context.Background(), traceparent)) == "" {
		return nil, platform.Errorf(http.StatusBadRequest, "traceparent %q is not a W3C traceparent", traceparent)
	}
	return platform.WithTrace(ctx, traceparent), nil
}

// send records mails, each under the id its key derives and in the trace
// its context carries, together in one round trip where it can. Expecting
// no entity there makes the record the lock: of two sends of one key, also
// at once, the second loses the append and sends nothing. Each mail's
// answer or error comes back in their order.
func send(ctx context.Context, cache *entitycache.Cache, log *slog.Logger, mails []shop.Email, traces []context.Context) ([]shop.MailAnswer, []error) {
	changes := make([]entitycache.Change, len(mails))
	for i, mail := range mails {
		changes[i] = shop.Emails.Change(shop.EmailSent, mail, eventstore.NoEntity)
		changes[i].Meta = platform.TraceMeta(traces[i])
	}
	_, errs := cache.CommitEach(ctx, changes...)
	answers := make([]shop.MailAnswer, len(mails))
	for i, mail := range mails {
		switch {
		case errors.Is(errs[i], eventstore.ErrConflict):
			answers[i], errs[i] = shop.MailAnswer{ID: mail.ID}, nil
		case errs[i] == nil:
			log.InfoContext(traces[i], "mail sent", "id", mail.ID, "key", mail.Key, "to", mail.To, "msg", mail.Msg,
				"traceparent", platform.TraceParent(traces[i]))
			answers[i] = shop.MailAnswer{ID: mail.ID, Sent: true}
		}
	}
	return answers, errs
}

func wire(app *platform.App, _ platform.NoConfig) error {
	app.Router.Post("/email", platform.Handle(func(r *http.Request) (any, error) {
		var b body
		if err := platform.Decode(r, &b); err != nil {
			return nil, err
		}
		mail, err := shop.NewEmail(b.To, b.Msg, b.Key)
		if err != nil {
			return nil, err
		}
		answers, errs := send(r.Context(), app.Cache, app.Log, []shop.Email{mail}, []context.Context{r.Context()})
		return answers[0], errs[0]
	}))
	// POST /emails sends many mails in one request, an array of 1 to
	// MAX_BATCH (shop.Mail): each as POST /email sends one, in its own trace
	// (else the request's). Every mail is checked before any is recorded,
	// so bad input records none. The mails are recorded together, in one
	// script run where they can, and each answers alone: the
	// answer is the array of their answers in the request's order, a mail
	// that could not be recorded with its error and the others as sent.
	// Only when none could be (Redis is away) does the request fail, as POST
	// /email would. Sending the mails again is safe: their keys make those
	// recorded answer sent:false, and send nothing twice.
	app.Router.Post("/emails", platform.Handle(func(r *http.Request) (any, error) {
		bodies, err := platform.DecodeMany[shop.Mail](r, app.Config.MaxBatch, "mail")
		if err != nil {
			return nil, err
		}
		mails := make([]shop.Email, len(bodies))
		ctxs := make([]context.Context, len(bodies))
		for i, b := range bodies {
			mails[i], err = shop.NewEmail(b.To, b.Msg, b.Key)
			if err == nil {
				ctxs[i], err = traceOf(r.Context(), b.TraceParent)
			}
			if err != nil {
				return nil, platform.ItemError(err, "mail", i, len(bodies))
			}
		}
		answers, errs := send(r.Context(), app.Cache, app.Log, mails, ctxs)
		failed := 0
		for i, err := range errs {
			if err == nil {
				continue
			}
			if failed++; failed == len(mails) {
				return nil, err
			}
			_, msg, logIt := platform.StatusOf(err)
			if logIt {
				app.Log.ErrorContext(ctxs[i], "mail not recorded", "key", mails[i].Key, "err", err)
			}
			answers[i] = shop.MailAnswer{Error: msg}
		}
		return answers, nil
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
