package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	pgtest.Stop()
	os.Exit(code)
}

type fixture struct {
	store  *eventstore.Store // with the archive (Reader)
	redis  *eventstore.Store // the same streams without it
	db     *pgxpool.Pool
	stream string
}

func setup(t *testing.T, dbURL string) fixture {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	return setupOn(t, rdb, prefix, dbURL)
}

// setupOn is setup on a Redis of the test's choice, the store with opts.
func setupOn(t *testing.T, rdb redis.UniversalClient, prefix, dbURL string, opts ...eventstore.Option) fixture {
	t.Helper()
	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(rdb, prefix, opts...)
	store.UseArchive(Reader{DB: db})
	return fixture{store: store, redis: eventstore.New(rdb, prefix), db: db, stream: "customer"}
}

// appendEvents appends n events to the stream, each of one of 10 entities.
func (f fixture) appendEvents(t *testing.T, n int, tag string) {
	t.Helper()
	for i := range n {
		e, err := eventstore.NewEvent("customer_updated", "customer", fmt.Sprintf("c%d", i%10),
			map[string]any{"id": i, "name": tag})
		if err == nil {
			e.Meta["trace"] = tag
			_, err = f.store.Append(context.Background(), f.stream, eventstore.Record{Event: e, Expected: eventstore.AnyVersion})
		}
		if err != nil {
			t.Errorf("append: %v", err)
			return
		}
	}
}

// run starts an archiver of the stream and returns its stop.
func (f fixture) run(t *testing.T, name string) (*Archiver, func()) {
	a := &Archiver{DB: f.db, Store: f.store, Streams: []string{f.stream}, Name: name, Batch: 50,
		Block: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return a, stop
}

// rows is how many events of the stream the archive holds, and how many
// distinct event IDs among them.
func (f fixture) rows(t *testing.T) (n, distinct int) {
	t.Helper()
	err := f.db.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id) FROM events WHERE stream = $1`,
		f.stream).Scan(&n, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	return n, distinct
}

func (f fixture) waitArchived(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, distinct := f.rows(t)
		if n == want && distinct == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("archive holds %d events (%d distinct), want %d", n, distinct, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// all is every event of the stream as Redis has it now.
func (f fixture) all(t *testing.T) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	if err := f.redis.Replay(context.Background(), f.stream, "0", func(es []eventstore.Event) error {
		out = append(out, es...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// replay is every event of the stream read through the archive.
func (f fixture) replay(t *testing.T) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	if err := f.store.Replay(context.Background(), f.stream, "0", func(es []eventstore.Event) error {
		out = append(out, es...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (f fixture) trimToWatermark(t *testing.T) string {
	t.Helper()
	mark, err := Watermark(context.Background(), f.db, f.stream)
	if err == nil && mark != "0" {
		err = f.store.Redis().XTrimMinID(context.Background(), f.store.StreamKey(f.stream), mark).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	return mark
}

func TestEveryEventIsArchivedOnceAndReadBackAsItWasAfterATrim(t *testing.T) {
	t.Parallel()
	f := setup(t, pgtest.URL(t))
	f.run(t, "archiver")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); f.appendEvents(t, 150, fmt.Sprint("writer", w)) }()
	}
	wg.Wait()
	f.waitArchived(t, 600)
	want := f.all(t)
	f.trimToWatermark(t)
	if n, _ := f.store.Redis().XLen(context.Background(), f.store.StreamKey(f.stream)).Result(); n != 1 {
		t.Fatalf("the trimmed stream holds %d entries, want 1 (the watermark's)", n)
	}
	if got := f.replay(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("replay from archive and stream gives %d events, want the %d appended, equal", len(got), len(want))
	}
}

// A crash between a batch's commit and its ack, or between its delivery and
// its commit, leaves the batch pending: the archiver started again archives
// it, once.
func TestABatchHandedToACrashedArchiverIsArchivedOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, pgtest.URL(t))
	ctx := context.Background()
	rdb, key := f.store.Redis(), f.store.StreamKey(f.stream)
	if err := rdb.XGroupCreateMkStream(ctx, key, Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	f.appendEvents(t, 120, "before")
	// The crashed archiver was handed 100 entries and committed the first 60.
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: Group, Consumer: "archiver", Streams: []string{key, ">"},
		Count: 100}).Result()
	if err != nil {
		t.Fatal(err)
	}
	crashed := &Archiver{DB: f.db}
	if err := crashed.insert(ctx, f.stream, eventstore.DecodeEntries(f.stream, res[0].Messages[:60])); err != nil {
		t.Fatal(err)
	}
	a, _ := f.run(t, "archiver")
	f.waitArchived(t, 120)
	// Nothing pending: every batch was acked, which comes after its rows
	// were counted (a row is visible in PostgreSQL a moment before).
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := rdb.XPending(ctx, key, Group).Result()
		if err != nil {
			t.Fatal(err)
		}
		if p.Count == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still pending in the archive group", p.Count)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a.Rows() != 60 {
		t.Fatalf("the restarted archiver inserted %d rows, want 60 (the 40 handed and not committed, the 20 never handed)", a.Rows())
	}
	if !reflect.DeepEqual(f.replay(t), f.all(t)) {
		t.Fatal("the archive does not read back as the stream")
	}
}

// PostgreSQL stopped while events are appended: the archiver waits and,
// once it is back, archives every event once.
func TestPostgreSQLAwayForAWhileLosesNothing(t *testing.T) {
	t.Parallel()
	pg := pgtest.NewServer(t)
	f := setup(t, pg.Database(t))
	f.run(t, "archiver")
	f.appendEvents(t, 100, "before")
	f.waitArchived(t, 100)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	f.appendEvents(t, 100, "while away")
	// The archiver was handed some of them and could not commit.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := f.store.Redis().XPending(context.Background(), f.store.StreamKey(f.stream), Group).Result()
		if err != nil {
			t.Fatal(err)
		}
		if p.Count > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the archiver took no entry while PostgreSQL was away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	f.appendEvents(t, 50, "after")
	f.waitArchived(t, 250)
}

// Redis killed (SIGKILL) while the archiver works, and started again from
// its AOF: every event appended before and after is archived once, and the
// stream trimmed to the watermark reads back whole through the archive.
func TestRedisKilledWhileArchivingLosesNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	f := setupOn(t, srv.Client(t), "", pgtest.URL(t))
	f.run(t, "archiver")
	f.appendEvents(t, 100, "before")
	srv.Kill()
	srv.Start(t)
	f.appendEvents(t, 100, "after")
	f.waitArchived(t, 200)
	want := f.all(t)
	f.trimToWatermark(t)
	if got := f.replay(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the restart and a trim %d events read back, want the %d appended", len(got), len(want))
	}
}

// A batch delivered to the archiver whose reply it never saw (Redis
// restarted and the client retried the read: the first delivery stays in
// the archiver's pending entries) is archived all the same. The delivery is
// made here in one transaction with the append, before the blocked archiver
// is served.
func TestABatchDeliveredButNeverSeenIsArchived(t *testing.T) {
	t.Parallel()
	f := setup(t, pgtest.URL(t))
	f.run(t, "archiver")
	f.appendEvents(t, 10, "seen")
	f.waitArchived(t, 10)

	ctx, rdb, key := context.Background(), f.redis.Redis(), f.store.StreamKey(f.stream)
	last, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("the last entry: %v %v", last, err)
	}
	values := last[0].Values
	values["event_id"] = uuid.NewString()
	var lost *redis.XStreamSliceCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: values})
		lost = p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: Group, Consumer: "archiver", Streams: []string{key, ">"}, Count: 10})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := lost.Val(); len(got) != 1 || len(got[0].Messages) != 1 {
		t.Fatalf("delivered %v, want the one entry", got)
	}
	f.waitArchived(t, 11)
}

// An entry that no replica confirmed (its append answered ErrNotReplicated:
// a primary cut off from its replica took it, and a failover may roll it
// back) is not archived while no replica has it, though the archiver reads
// it again and again; once a replica has it, it is archived.
func TestAnEntryNoReplicaHasIsNotArchived(t *testing.T) {
	t.Parallel()
	primary := redistest.NewServer(t)
	replica := redistest.NewReplica(t, primary.Addr)
	f := setupOn(t, primary.Client(t), "", pgtest.URL(t), eventstore.WithReplicas(1, time.Second))
	f.run(t, "archiver")
	f.appendEvents(t, 10, "replicated")
	f.waitArchived(t, 10)

	replica.Kill()
	e, err := eventstore.NewEvent("customer_updated", "customer", "c0", map[string]any{"name": "alone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Append(context.Background(), f.stream, eventstore.Record{Event: e, Expected: eventstore.AnyVersion}); !errors.Is(err, eventstore.ErrNotReplicated) {
		t.Fatalf("append with the replica gone: %v, want ErrNotReplicated", err)
	}
	redistest.Eventually(t, 20*time.Second, "the archiver reading the entry again", func() bool {
		p, err := f.redis.Redis().XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: f.store.StreamKey(f.stream), Group: Group, Start: "-", End: "+", Count: 1}).Result()
		return err == nil && len(p) == 1 && p[0].RetryCount >= 2
	})
	if n, _ := f.rows(t); n != 10 {
		t.Fatalf("the archive holds %d events while no replica has the 11th, want 10", n)
	}
	redistest.NewReplica(t, primary.Addr)
	f.waitArchived(t, 11)
}

// Replays run while events are appended, the archiver archives them and
// the stream is trimmed to the watermark again and again: each gives the
// events appended so far, each once, in order, with no gap.
func TestReplayRacingAppendsArchiveAndTrimMissesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t, pgtest.URL(t))
	f.run(t, "archiver")
	var (
		mu      sync.Mutex
		history []string // the stream IDs appended, in order
	)
	writing, trimming := make(chan struct{}), make(chan int)
	go func() {
		defer close(writing)
		for i := range 3000 {
			e, err := eventstore.NewEvent("customer_updated", "customer", fmt.Sprintf("c%d", i%10), map[string]any{"id": i})
			var out []eventstore.Event
			if err == nil {
				out, err = f.store.Append(context.Background(), f.stream, eventstore.Record{Event: e, Expected: eventstore.AnyVersion})
			}
			if err != nil {
				t.Errorf("append: %v", err)
				return
			}
			mu.Lock()
			history = append(history, out[0].StreamID)
			mu.Unlock()
		}
	}()
	go func() {
		n := 0
		defer func() { trimming <- n }()
		for {
			select {
			case <-writing:
				return
			default:
			}
			f.trimToWatermark(t)
			n++
		}
	}()
	replays := 0
	for done := false; !done; replays++ {
		select {
		case <-writing:
			done = true
		default:
		}
		got := f.replay(t)
		// An append may be in the stream before its caller hears of it: compare
		// what both have; once writing is done, that is everything.
		mu.Lock()
		n := min(len(got), len(history))
		want := history[:n]
		if done && len(got) != len(history) {
			t.Fatalf("the last replay gives %d events, want %d", len(got), len(history))
		}
		mu.Unlock()
		ids := make([]string, n)
		for i, e := range got[:n] {
			ids[i] = e.StreamID
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("replay %d: its first %d events are not the first %d appended, in order, each once", replays, n, n)
		}
	}
	if n := <-trimming; n == 0 || replays < 2 {
		t.Fatalf("%d trims during %d replays: no race", n, replays)
	}
	f.waitArchived(t, 3000)
}

// go test -run '^$' -bench Archive -benchtime 20000x ./pkg/archive/
func BenchmarkArchive(b *testing.B) {
	rdb, prefix := redistest.Client(b)
	db, err := pgxpool.New(context.Background(), pgtest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := Migrate(context.Background(), db); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	store := eventstore.New(rdb, prefix)
	for i := 0; i < b.N; i += 100 {
		recs := make([]eventstore.Record, 0, 100)
		for j := i; j < min(i+100, b.N); j++ {
			e, _ := eventstore.NewEvent("customer_updated", "customer", fmt.Sprintf("c%d", j%1000),
				map[string]any{"id": fmt.Sprintf("c%d", j%1000), "name": "Ada Lovelace", "email": "ada@example.com"})
			recs = append(recs, eventstore.Record{Event: e, Expected: eventstore.AnyVersion})
		}
		if _, err := store.Append(ctx, "customer", recs...); err != nil {
			b.Fatal(err)
		}
	}
	redisBytes, _ := rdb.MemoryUsage(ctx, store.StreamKey("customer"), 0).Result()
	b.ResetTimer()
	a := &Archiver{DB: db, Store: store, Streams: []string{"customer"}, Block: 10 * time.Millisecond}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(runCtx); close(done) }()
	for a.Rows() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	var pgBytes int64
	db.QueryRow(ctx, `SELECT pg_total_relation_size('events')`).Scan(&pgBytes)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(redisBytes)/float64(b.N), "redis-B/event")
	b.ReportMetric(float64(pgBytes)/float64(b.N), "pg-B/event")
}
