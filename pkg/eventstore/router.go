package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// Middleware wraps a handler with work every event shares: its trace, a log
// line, recovery from panics, metrics.
type Middleware func(Handler) Handler

// Router hands each event to the handler registered for its type, behind the
// middleware, and acks events of other types untouched: a consumer reads
// whole streams, and most services care for a few of their event types.
type Router struct {
	routes     map[string]Handler
	middleware []Middleware
}

// NewRouter returns a router with no routes.
func NewRouter() *Router { return &Router{routes: map[string]Handler{}} }

// Use adds middleware; the first added is the outermost.
func (r *Router) Use(mw ...Middleware) { r.middleware = append(r.middleware, mw...) }

// Handle registers the handler of an event type; a second one for the same
// type is a programming error.
func (r *Router) Handle(eventType string, h Handler) {
	if _, dup := r.routes[eventType]; dup {
		panic("eventstore: two handlers for " + eventType)
	}
	r.routes[eventType] = h
}

// On registers a handler that gets the event's entity decoded as T. An entity
// that does not decode fails the delivery.
func On[T any](r *Router, eventType string, h func(ctx context.Context, e Event, entity T) error) {
	r.Handle(eventType, func(ctx context.Context, e Event) error {
		var ent T
		if err := e.Decode(&ent); err != nil {
			return err
		}
		return h(ctx, e, ent)
	})
}

// Handler is the router as one handler, for a consumer.
func (r *Router) Handler() Handler {
	h := Handler(func(ctx context.Context, e Event) error {
		if route, ok := r.routes[e.Type]; ok {
			return route(ctx, e)
		}
		return nil
	})
	return Wrap(h, r.middleware...)
}

// Wrap is h behind the middleware; the first is the outermost.
func Wrap(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// Recoverer turns a handler's panic into a failed delivery, so that the
// event is retried and in the end dead-lettered instead of crashing the
// consumer on it again and again.
func Recoverer(next Handler) Handler {
	return func(ctx context.Context, e Event) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("handler panicked on %s %s: %v\n%s", e.Type, e.StreamID, p, debug.Stack())
			}
		}()
		return next(ctx, e)
	}
}

// Logging logs each failed or skipped delivery with its event and how long
// it took.
func Logging(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, e Event) error {
			start := time.Now()
			err := next(ctx, e)
			if err != nil {
				level, msg := slog.LevelWarn, "handler failed"
				if errors.Is(err, ErrSkip) {
					level, msg = slog.LevelInfo, "handler skipped the event"
				}
				log.Log(ctx, level, msg, "type", e.Type, "stream_id", e.StreamID,
					"event_id", e.ID, "entity_id", e.EntityID, "took", time.Since(start), "err", err)
			}
			return err
		}
	}
}
