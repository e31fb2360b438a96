package main

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// Mail records grow with every mail sent, so msg forgets those sent more
// than MAIL_RETENTION ago: an email_forgotten event takes a record out of
// the cache (GET /emails no longer lists it), and the event of its sending
// stays in the stream (or the archive). A mail is still sent once per key
// after its record is gone: the send expects no entity of its id, and the
// entity's version, which the stream holds, stays above none.

// forget forgets old mails every while until ctx ends.
func forget(ctx context.Context, cache *entitycache.Cache, log *slog.Logger, retention time.Duration) error {
	return platform.Every(ctx, min(retention/10, time.Minute), func(ctx context.Context) {
		n, err := forgetBefore(ctx, cache, time.Now().Add(-retention))
		if err != nil && ctx.Err() == nil {
			log.Warn("forgetting old mails", "err", err, "forgotten", n)
		}
	})
}

// forgetBefore forgets the mails sent before a time and answers how many.
// It reads each partition of the mail stream on from where it stopped the
// last time (a key of the partition holds that stream ID), up to the first
// mail sent after the time. Forgetting expects the version of the sending,
// so a mail forgotten already, by a pass that stopped before it kept its
// place, is left alone.
func forgetBefore(ctx context.Context, cache *entitycache.Cache, before time.Time) (int, error) {
	n := 0
	for _, part := range cache.Store().Partitions(shop.Emails.StreamName()) {
		m, err := forgetIn(ctx, cache, part, before)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// errPastCut stops the replay of forgetIn at the first mail sent after its
// time.
var errPastCut = errors.New("past the cut")

// forgetIn forgets the mails of one partition sent before a time. It reads
// through Store.Replay, so with an archive the mails a trim took out of the
// stream too: mails older than the retention usually are only there.
func forgetIn(ctx context.Context, cache *entitycache.Cache, part string, before time.Time) (int, error) {
	store, n := cache.Store(), 0
	place := store.Key(part, "forgotten_up_to")
	from, err := store.Redis().Get(ctx, place).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return n, err
	}
	err = store.Replay(ctx, part, from, func(events []eventstore.Event) error {
		var stop error
		for _, e := range events {
			if !sentBefore(e.StreamID, before) {
				stop = errPastCut
				break
			}
			from = e.StreamID
			if e.Type != shop.EmailSent {
				continue
			}
			var mail shop.Email
			if err := e.Decode(&mail); err != nil {
				return err
			}
			_, err := cache.Commit(ctx, shop.Emails.Change(shop.EmailForgotten, mail, e.Version))
			if errors.Is(err, eventstore.ErrConflict) {
				continue
			}
			if err != nil {
				return err
			}
			n++
		}
		if err := store.Redis().Set(ctx, place, from, 0).Err(); err != nil {
			return err
		}
		return stop
	})
	if errors.Is(err, errPastCut) {
		err = nil
	}
	return n, err
}

// sentBefore says whether the stream ID of an entry is before a time: its
// first part is the Unix millisecond Redis added it at.
func sentBefore(streamID string, t time.Time) bool {
	ms, _, _ := strings.Cut(streamID, "-")
	at, err := strconv.ParseInt(ms, 10, 64)
	return err == nil && at < t.UnixMilli()
}
