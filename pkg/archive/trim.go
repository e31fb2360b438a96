package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// TrimPoint is the lowest stream ID of a stream that must stay in Redis:
// the lowest of its archive watermark, each consumer group's last delivered
// entry and oldest pending one, the original of each of its dead letters,
// and the first entry of the hot window (now - hot). "0" when nothing is
// archived yet: then nothing may go. Each of these only moves forward, so
// a point computed a moment ago stays safe.
func TrimPoint(ctx context.Context, db *pgxpool.Pool, store *eventstore.Store, stream string,
	hot time.Duration, now time.Time) (string, error) {
	low, err := Watermark(ctx, db, stream)
	if err != nil || low == "0" {
		return low, err
	}
	lower := func(id string) {
		if eventstore.IDBefore(id, low) {
			low = id
		}
	}
	lower(fmt.Sprintf("%d-0", now.Add(-hot).UnixMilli()))
	rdb, key := store.Redis(), store.StreamKey(stream)
	groups, err := rdb.XInfoGroups(ctx, key).Result()
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		lower(g.LastDeliveredID)
		if g.Pending > 0 {
			p, err := rdb.XPending(ctx, key, g.Name).Result()
			if err != nil {
				return "", err
			}
			lower(p.Lower)
		}
		dead, err := rdb.XRange(ctx, store.DeadLetterKey(stream, g.Name), "-", "+").Result()
		if err != nil && err != redis.Nil {
			return "", err
		}
		for _, d := range dead {
			if id, ok := d.Values[eventstore.DeadLetterOriginal].(string); ok {
				lower(id)
			}
		}
	}
	return low, nil
}

// Trim removes from a stream the entries below its TrimPoint and returns
// how many it removed.
func Trim(ctx context.Context, db *pgxpool.Pool, store *eventstore.Store, stream string, hot time.Duration) (int64, error) {
	low, err := TrimPoint(ctx, db, store, stream, hot, time.Now())
	if err != nil || low == "0" {
		return 0, err
	}
	return store.Redis().XTrimMinID(ctx, store.StreamKey(stream), low).Result()
}
