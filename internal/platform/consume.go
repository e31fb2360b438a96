package platform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Consuming is the config of a service that reads streams through a
// consumer group.
type Consuming struct {
	ConsumerName  string        `envconfig:"CONSUMER_NAME"` // unique per replica; the hostname when empty
	ClaimIdle     time.Duration `envconfig:"CLAIM_IDLE" default:"30s"`
	RetryDelay    time.Duration `envconfig:"RETRY_DELAY" default:"200ms"`
	MaxRetryDelay time.Duration `envconfig:"MAX_RETRY_DELAY" default:"30s"`
	MaxDeliveries int64         `envconfig:"MAX_DELIVERIES" default:"15"`
	Batch         int64         `envconfig:"BATCH" default:"50"`
	// Handlers at once; each entity's events stay in order on one of them.
	Workers int `envconfig:"CONSUMER_WORKERS" default:"1"`
}

// Consume runs a consumer of the group on the streams of entity types while the app serves,
// handing each event to the router behind the middleware every consumer
// shares (its trace, its metrics, a log line per failure, panics as
// failures), and reports its streams in the metrics. It keeps the app
// unready while it is not reading, and adds the routes an operator needs to
// the admin listener: GET /ops/stats, GET /ops/deadletters and
// POST /ops/deadletters/{stream}/{id}/replay.
func Consume(app *App, c Consuming, group string, types []string, router *eventstore.Router) error {
	name, err := consumerName(c.ConsumerName, group)
	if err != nil {
		return err
	}
	// The router is the service's, and may serve another consumer: it stays as it is.
	handler := eventstore.Wrap(router.Handler(), tracedEvents(group), app.Metrics.handling(group),
		eventstore.Logging(app.Log.With("group", group)), eventstore.Recoverer)
	var streams []string // every partition of the entity types' streams
	for _, typ := range types {
		streams = append(streams, app.Store.Partitions(typ)...)
	}
	consumer, err := app.Store.NewConsumer(eventstore.ConsumerConfig{
		Group: group, Name: name, Streams: streams, Handler: handler,
		Batch: c.Batch, ClaimIdle: c.ClaimIdle, RetryDelay: c.RetryDelay, MaxRetryDelay: c.MaxRetryDelay,
		MaxDeliveries: c.MaxDeliveries, Workers: c.Workers, Logger: app.Log, OnDeadLetter: app.Metrics.deadLettered(group),
	})
	if err != nil {
		return err
	}
	app.Go(consumer.Run)
	app.Metrics.Streams(group, func(ctx context.Context) ([]eventstore.StreamInfo, error) {
		st, err := consumer.Stats(ctx)
		return st.Streams, err
	})
	app.OnReady(func(context.Context) error {
		if !consumer.Running() {
			return errNotReading
		}
		return nil
	})
	app.Admin.Get("/ops/stats", Handle(func(r *http.Request) (any, error) { return consumer.Stats(r.Context()) }))
	app.Admin.Get("/ops/deadletters", Handle(func(r *http.Request) (any, error) {
		out := []eventstore.DeadLetter{}
		for _, s := range streams {
			dls, err := app.Store.DeadLetters(r.Context(), s, group, 100)
			if err != nil {
				return nil, err
			}
			out = append(out, dls...)
		}
		return out, nil
	}))
	app.Admin.Post("/ops/deadletters/{stream}/{id}/replay", Handle(func(r *http.Request) (any, error) {
		// A partition's name has a colon, which a client may send escaped.
		stream, err := url.PathUnescape(chi.URLParam(r, "stream"))
		if err != nil {
			return nil, Errorf(http.StatusBadRequest, "stream %q: %v", chi.URLParam(r, "stream"), err)
		}
		id := chi.URLParam(r, "id")
		if !slices.Contains(streams, stream) {
			return nil, Errorf(http.StatusBadRequest, "unknown stream %q, want one of %s", stream, strings.Join(streams, ", "))
		}
		if !streamID.MatchString(id) {
			return nil, Errorf(http.StatusBadRequest, "id must be a stream ID like 1700000000000-0, not %q", id)
		}
		err = consumer.Replay(r.Context(), stream, id)
		switch {
		case errors.Is(err, eventstore.ErrNoDeadLetter):
			return nil, Errorf(http.StatusNotFound, "no dead letter %s in %s", id, stream)
		case errors.Is(err, eventstore.ErrReplayFailed):
			// The handler still fails: the dead letter stays where it is.
			return nil, Errorf(http.StatusConflict, "%v", err)
		}
		return true, err
	}))
	return nil
}

// consumerName is the configured name, else the hostname: each replica of a
// service (a container, a pod) has its own, so that two never read as one
// consumer. A container that restarts keeps it and re-reads its own pending
// entries; the entries of one that is replaced are claimed after ClaimIdle.
func consumerName(configured, group string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "", fmt.Errorf("consumer of %s: no CONSUMER_NAME and no hostname: %v", group, err)
	}
	return host, nil
}

var streamID = regexp.MustCompile(`^[0-9]+-[0-9]+$`)
