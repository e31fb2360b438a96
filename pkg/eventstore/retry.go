package eventstore

import (
	"context"
	"time"
)

// A failed entry stays pending with this consumer, which delivers it to
// itself again after RetryDelay·2^(n-1), n its deliveries so far, capped at
// MaxRetryDelay: soon after a short hiccup, rarely during a long outage of
// what the handler calls. The retry is apart from the claim of idle entries,
// which serves only entries of consumers that are gone; meanwhile the
// consumer keeps the waiting entry owned so that no one claims it.

// retry is a failed entry waiting for its next delivery.
type retry struct {
	stream, id string
	due        time.Time
}

// retryLater schedules the next delivery of an entry delivered n times.
func (c *Consumer) retryLater(stream, id string, n int64) {
	d := c.cfg.RetryDelay
	for i := int64(1); i < n && d < c.cfg.MaxRetryDelay; i++ {
		d *= 2
	}
	c.retries = append(c.retries, retry{stream: stream, id: id, due: time.Now().Add(min(d, c.cfg.MaxRetryDelay))})
}

// nextRetry is when the earliest waiting retry is due.
func (c *Consumer) nextRetry() (time.Time, bool) {
	var next time.Time
	for _, r := range c.retries {
		if next.IsZero() || r.due.Before(next) {
			next = r.due
		}
	}
	return next, !next.IsZero()
}

// retryDue keeps the waiting retries owned when it is time, then delivers
// the due ones again and handles them.
func (c *Consumer) retryDue(ctx context.Context) error {
	if err := c.keepRetriesOwned(ctx); err != nil {
		return err
	}
	due, waiting, now := map[string][]string{}, c.retries[:0], time.Now()
	for _, r := range c.retries {
		if now.Before(r.due) {
			waiting = append(waiting, r)
		} else {
			due[r.stream] = append(due[r.stream], r.id)
		}
	}
	c.retries = waiting
	if len(due) > 0 {
		c.flush(ctx) // before the handling, which may take long
	}
	for stream, ids := range due {
		msgs, err := c.deliverOwn(ctx, stream, ids)
		if err != nil {
			return err
		}
		c.handle(ctx, stream, msgs, false) // a failure schedules the next retry
	}
	return nil
}

// keepRetriesOwned keeps the waiting retries owned, every ClaimIdle/3, and
// forgets those another consumer took meanwhile: they are its own now.
func (c *Consumer) keepRetriesOwned(ctx context.Context) error {
	if len(c.retries) == 0 || time.Since(c.retriesKept) < c.keepEvery() {
		return nil
	}
	c.retriesKept = time.Now()
	ids := map[string][]string{}
	for _, r := range c.retries {
		ids[r.stream] = append(ids[r.stream], r.id)
	}
	owned := map[string]map[string]bool{}
	for stream := range ids {
		o, err := c.keep(ctx, stream, ids[stream])
		if err != nil {
			return err
		}
		owned[stream] = o
	}
	kept := c.retries[:0]
	for _, r := range c.retries {
		if owned[r.stream][r.id] {
			kept = append(kept, r)
		}
	}
	c.retries = kept
	return nil
}
