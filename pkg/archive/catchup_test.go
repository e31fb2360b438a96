package archive

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

func streamIDs(events []eventstore.Event) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.StreamID
	}
	return ids
}

// consume runs a consumer of the stream in group, through the store with
// the archive, until stop. got is the stream IDs of the events handed to
// its handler so far, in the order handed.
func (f fixture) consume(t *testing.T, group string) (got func() []string, stop func()) {
	t.Helper()
	var (
		mu  sync.Mutex
		ids []string
	)
	c, err := f.store.NewConsumer(eventstore.ConsumerConfig{Group: group, Name: "c1", Streams: []string{f.stream},
		Block: 50 * time.Millisecond, Handler: func(_ context.Context, e eventstore.Event) error {
			mu.Lock()
			defer mu.Unlock()
			ids = append(ids, e.StreamID)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	got = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ids)
	}
	return got, stop
}

// waitDone waits until the group was handed the stream's last entry and
// acked everything.
func (f fixture) waitDone(t *testing.T, group string) {
	t.Helper()
	ctx, key := context.Background(), f.store.StreamKey(f.stream)
	redistest.Eventually(t, 30*time.Second, group+" handles every event", func() bool {
		last, err := f.store.Redis().XRevRangeN(ctx, key, "+", "-", 1).Result()
		if err != nil || len(last) == 0 {
			return false
		}
		groups, err := f.store.Redis().XInfoGroups(ctx, key).Result()
		return err == nil && slices.ContainsFunc(groups, func(g redis.XInfoGroup) bool {
			return g.Name == group && g.LastDeliveredID == last[0].ID && g.Pending == 0
		})
	})
}

// A group created after the stream was trimmed is handed the events that
// are only in the archive first, then those of the stream: each once, in
// order, from the first.
func TestANewGroupIsHandedTheArchivedEventsFirst(t *testing.T) {
	t.Parallel()
	f := setup(t, pgtest.URL(t))
	f.run(t, "archiver")
	f.appendEvents(t, 120, "before")
	f.waitArchived(t, 120)
	want := streamIDs(f.all(t))
	f.trimToWatermark(t)
	f.appendEvents(t, 30, "after")
	hot := streamIDs(f.all(t))
	if len(hot) != 31 || hot[0] != want[len(want)-1] {
		t.Fatalf("the trimmed stream holds %d entries, want the watermark's and the 30 after it", len(hot))
	}
	want = append(want, hot[1:]...)
	got, stop := f.consume(t, "late")
	f.waitDone(t, "late")
	stop()
	if ids := got(); !slices.Equal(ids, want) {
		t.Fatalf("the new group was handed %d events, want the %d appended, each once, in order", len(ids), len(want))
	}
}

// A consumer stopped while events are appended and archived: a trim as far
// as allowed keeps what its group has yet to read. The group lost (an
// operator's XGROUP DESTROY, a failover to a replica that never saw it), the
// next trim goes up to the watermark; the consumer started again creates its
// group from its checkpoint and is handed everything after it, from the
// archive and then the stream, each once, in order.
func TestAConsumerStoppedWhileTheStreamIsTrimmedCatchesUp(t *testing.T) {
	t.Parallel()
	f := setup(t, pgtest.URL(t))
	ctx, rdb, key := context.Background(), f.store.Redis(), f.store.StreamKey(f.stream)
	f.run(t, "archiver")
	f.appendEvents(t, 60, "before")
	_, stop := f.consume(t, "crm")
	f.waitDone(t, "crm")
	stop()
	f.appendEvents(t, 90, "while stopped")
	f.waitArchived(t, 150)
	all := streamIDs(f.all(t))
	trim := func() string {
		t.Helper()
		if _, err := Trim(ctx, f.db, f.store, f.stream, 0); err != nil {
			t.Fatal(err)
		}
		first, err := rdb.XRangeN(ctx, key, "-", "+", 1).Result()
		if err != nil || len(first) == 0 {
			t.Fatalf("the trimmed stream is empty (%v)", err)
		}
		return first[0].ID
	}
	if first := trim(); first != all[59] {
		t.Fatalf("the trim went up to %s, want the group's last delivered entry %s", first, all[59])
	}
	checkpoint, err := rdb.HGet(ctx, f.store.CheckpointKey(f.stream), "crm").Result()
	if err != nil || checkpoint != all[59] {
		t.Fatalf("checkpoint %q (%v), want %s", checkpoint, err, all[59])
	}
	if err := rdb.XGroupDestroy(ctx, key, "crm").Err(); err != nil {
		t.Fatal(err)
	}
	// Up to the watermark once the archiver acked its last batch.
	redistest.Eventually(t, 10*time.Second, "a trim without the group up to the watermark", func() bool {
		return trim() == all[len(all)-1]
	})
	got, _ := f.consume(t, "crm")
	f.waitDone(t, "crm")
	if ids := got(); !slices.Equal(ids, all[60:]) {
		t.Fatalf("started again the consumer was handed %d events, want the 90 after its checkpoint, each once, in order", len(ids))
	}
}
