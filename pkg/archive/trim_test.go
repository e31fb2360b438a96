package archive

import (
	"context"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/redis/go-redis/v9"
)

// first is the ID of the stream's first entry.
func (f fixture) first(t *testing.T) string {
	t.Helper()
	msgs, err := f.store.Redis().XRangeN(context.Background(), f.store.StreamKey(f.stream), "-", "+", 1).Result()
	if err != nil || len(msgs) == 0 {
		t.Fatalf("first entry: %v, %v", msgs, err)
	}
	return msgs[0].ID
}

// Every bound that must keep an entry in Redis keeps it: what is not
// archived, what a group has not read or not acked, what a dead letter
// names, the hot window; with none left, the stream is trimmed to the
// watermark.
func TestATrimKeepsWhatIsNotArchivedOrNotHandled(t *testing.T) {
	t.Parallel()
	f := setup(t, pgtest.URL(t))
	ctx := context.Background()
	rdb, key := f.store.Redis(), f.store.StreamKey(f.stream)
	f.appendEvents(t, 100, "history")
	all := f.all(t)
	id := func(i int) string { return all[i].StreamID }
	trim := func(hot time.Duration) {
		t.Helper()
		if _, err := Trim(ctx, f.db, f.store, f.stream, hot); err != nil {
			t.Fatal(err)
		}
	}
	trim(0)
	if got := f.first(t); got != id(0) {
		t.Fatalf("with nothing archived the trim took the stream up to %s", got)
	}
	a := &Archiver{DB: f.db}
	if err := a.insert(ctx, f.stream, all[:60]); err != nil {
		t.Fatal(err)
	}
	// A stopped consumer that read up to the 30th and left the 20th pending.
	if err := rdb.XGroupCreate(ctx, key, "crm", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crm", Consumer: "c1", Streams: []string{key, ">"}, Count: 30}).Result()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, 30)
	for i, m := range res[0].Messages {
		if i != 19 {
			ids = append(ids, m.ID)
		}
	}
	rdb.XAck(ctx, key, "crm", ids...)
	// A dead letter of the 10th: its original stays too.
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: f.store.DeadLetterKey(f.stream, "crm"), Values: []any{"dl.stream_id", id(9)}})
	for _, step := range []struct {
		what string
		undo func()
		want string
	}{
		{"the dead letter's original", func() { rdb.Del(ctx, f.store.DeadLetterKey(f.stream, "crm")) }, id(9)},
		{"the group's pending entry", func() { rdb.XAck(ctx, key, "crm", id(19)) }, id(19)},
		{"the group's last read", func() {
			res, _ := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crm", Consumer: "c1", Streams: []string{key, ">"}, Count: 100}).Result()
			for _, m := range res[0].Messages {
				rdb.XAck(ctx, key, "crm", m.ID)
			}
		}, id(29)},
		{"the watermark", nil, id(59)},
	} {
		trim(0)
		if got := f.first(t); got != step.want {
			t.Fatalf("kept by %s: the stream starts at %s, want %s", step.what, got, step.want)
		}
		if step.undo != nil {
			step.undo()
		}
	}
	if err := a.insert(ctx, f.stream, all[60:]); err != nil {
		t.Fatal(err)
	}
	trim(time.Hour)
	if got := f.first(t); got != id(59) {
		t.Fatalf("inside the hot window the stream starts at %s, want %s", got, id(59))
	}
	trim(0)
	if got := f.first(t); got != id(99) {
		t.Fatalf("all archived and handled: the stream starts at %s, want the watermark %s", got, id(99))
	}
}
