package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// replicated is a store on the shared Redis whose appends wait for one
// replica within timeout, and a live replica of the Redis (on a cluster:
// the master) that holds its customer stream. The tests that use it do not
// run in parallel: a replica of the shared Redis would confirm the appends
// of another test too.
// It returns the store's prefix too.
func replicated(t testing.TB, timeout time.Duration) (*eventstore.Store, string, *redistest.Server) {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	s := eventstore.New(rdb, prefix, eventstore.WithReplicas(1, timeout))
	return s, prefix, redistest.ReplicaOf(t, rdb, s.StreamKey("customer"))
}

// WAIT's promise: when an append returns, the replica has it. Replication
// on loopback is fast, so without the WAIT only some of the reads on the
// replica would miss their append; the next test is the one that fails
// without it every time.
func TestAnAppendReturnsOnceAReplicaHasIt(t *testing.T) {
	s, _, replica := replicated(t, 5*time.Second)
	ctx, r := context.Background(), replica.Client(t)
	for i := range 200 {
		out, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", "c1", i), Expected: eventstore.AnyVersion})
		if err != nil {
			t.Fatal(err)
		}
		id := out[0].StreamID
		if got, err := r.XRange(ctx, s.StreamKey("customer"), id, id).Result(); err != nil || len(got) != 1 {
			t.Fatalf("append %d returned before the replica had it: XRANGE %s on the replica: %v %v", i, id, got, err)
		}
	}
}

// With its replica gone, an append is written on the primary but answers
// ErrNotReplicated once the timeout is over; sent again with its
// idempotency key it writes nothing and answers what the first did.
func TestAnAppendNoReplicaConfirmsInTimeIsErrNotReplicatedAndSafeToRetry(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s, prefix, replica := replicated(t, timeout)
	replica.Kill()
	ctx := eventstore.WithIdempotencyKey(context.Background(), "POST /customers k1")
	rec := eventstore.Record{Event: event(t, "customer_created", "c1", 0), Expected: eventstore.NoEntity}
	start := time.Now()
	_, err := s.Append(ctx, "customer", rec)
	took := time.Since(start)
	if !errors.Is(err, eventstore.ErrNotReplicated) {
		t.Fatalf("append with no replica: %v, want ErrNotReplicated", err)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("ErrNotReplicated after %v, want about the timeout, %v", took, timeout)
	}
	rdb, key := s.Redis(), s.StreamKey("customer")
	written := rdb.XRange(ctx, key, "-", "+").Val()
	if len(written) != 1 {
		t.Fatalf("the stream holds %d entries, want the one written on the primary", len(written))
	}
	// Once replicas confirm again (here: a store that waits for none), the
	// retry gets the first append's answer.
	again, err := eventstore.New(rdb, prefix).Append(ctx, "customer", rec)
	if err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, key).Val(); n != 1 || again[0].StreamID != written[0].ID || again[0].Version != 1 {
		t.Errorf("the retry answered %s v%d and the stream holds %d entries, want %s v1 and 1", again[0].StreamID, again[0].Version, n, written[0].ID)
	}
}

// With no replicas asked for, the default, an append is its script alone:
// no WAIT, which with replicas is pipelined after it.
func TestAnAppendWaitsForNoReplicaByDefault(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	sent := &redistest.Sent{}
	rdb.AddHook(sent)
	s := eventstore.New(rdb, prefix, eventstore.WithReplicas(0, time.Second))
	ctx := sent.Counted(context.Background())
	for i := range 2 { // the first loads the script
		sent.Reset()
		if _, err := s.Append(ctx, "customer", eventstore.Record{Event: event(t, "customer_created", "c1", i), Expected: eventstore.AnyVersion}); err != nil {
			t.Fatal(err)
		}
	}
	if p, c := sent.Pipelines.Load(), sent.Commands.Load(); p != 0 || c != 1 {
		t.Errorf("an append sent %d pipelines and %d commands, want its EVALSHA alone", p, c)
	}
}

// BenchmarkAppendWithAReplica appends one event at a time beside a live
// replica, waiting for it (WAIT 1) or not.
func BenchmarkAppendWithAReplica(b *testing.B) {
	s, prefix, _ := replicated(b, time.Second)
	for _, bc := range []struct {
		name  string
		store *eventstore.Store
	}{{"wait", s}, {"nowait", eventstore.New(s.Redis(), prefix)}} {
		b.Run(bc.name, func(b *testing.B) {
			e := event(b, "customer_created", "c1", 0)
			for b.Loop() {
				e.ID = uuid.NewString()
				if _, err := bc.store.Append(context.Background(), "customer", eventstore.Record{Event: e, Expected: eventstore.AnyVersion}); err != nil {
					b.Fatal(err)
				}
			}
			eventsPerSecond(b, b.N)
		})
	}
}

// A node asked directly for a slot it no longer serves (a failover gave it
// to the replica) ran nothing: its MOVED or ASK is ErrSlotMoved, which
// clients may send again; any other error stays as it is.
func TestARedirectedAppendIsErrSlotMoved(t *testing.T) {
	rdb, _ := redistest.Client(t)
	s := eventstore.New(rdb, "", eventstore.WithReplicas(1, time.Second))
	for _, reply := range []string{"MOVED 1597 redis-5:6379", "ASK 1597 redis-5:6379"} {
		if err := eventstore.Moved(s, errors.New(reply)); !errors.Is(err, eventstore.ErrSlotMoved) {
			t.Errorf("%s: %v, want ErrSlotMoved", reply, err)
		}
	}
	other := errors.New("NOREPLICAS Not enough good replicas to write.")
	if err := eventstore.Moved(s, other); err != other {
		t.Errorf("NOREPLICAS: %v, want it as it is", err)
	}
}

// While a stream's hash slot moves to another master, and after it has, an
// append sent to the old master (the cluster client's slot map is behind)
// runs nothing there: it is ErrSlotMoved, ASK while the slot is migrating,
// MOVED once it is the other's, and the client reloads its map, so that the
// append, sent again with its key, lands once, on the new master.
func TestAnAppendToAMovedSlotIsErrSlotMovedAndLandsOnceOnTheNewMaster(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.NewCluster(t)
	// Two stores, each with its client: one sends while the slot migrates,
	// the other's slot map is from before the move, whatever the first one's
	// reloads saw.
	late := redis.NewClusterClient(rdb.Options())
	t.Cleanup(func() { late.Close() })
	s, behind := eventstore.New(rdb, "", eventstore.WithReplicas(1, 5*time.Second)), eventstore.New(late, "", eventstore.WithReplicas(1, 5*time.Second))
	key := s.StreamKey("customer")
	slot := int(rdb.ClusterKeySlot(ctx, key).Val())
	src, err := rdb.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var dst *redis.Client
	rdb.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
		if m.Options().Addr != src.Options().Addr {
			dst = m
		}
		return nil
	})
	for _, m := range []*redis.Client{src, dst} {
		redistest.NewReplica(t, m.Options().Addr)
	}
	send := func(s *eventstore.Store, id string) ([]eventstore.Event, error) {
		kctx := eventstore.WithIdempotencyKey(ctx, "POST /customer "+id)
		return s.Append(kctx, "customer", eventstore.Record{Event: event(t, "customer_created", id, 0), Expected: eventstore.NoEntity})
	}
	if _, err := send(behind, "c1"); err != nil {
		t.Fatal(err)
	}

	assign := redistest.MoveSlot(t, rdb, src, dst, slot)
	_, err = send(s, "c2")
	if !errors.Is(err, eventstore.ErrSlotMoved) || !strings.Contains(err.Error(), "ASK") {
		t.Fatalf("an append while its slot migrates: %v, want ErrSlotMoved (ASK)", err)
	}
	if n := src.ClusterCountKeysInSlot(ctx, slot).Val(); n != 0 {
		t.Errorf("the old master holds %d keys of the slot after the refused append", n)
	}
	// The importing master serves the slot's keys to a client that says ASKING.
	pipe := dst.Pipeline()
	pipe.Do(ctx, "ASKING")
	n := pipe.XLen(ctx, key)
	pipe.Exec(ctx)
	if n.Val() != 1 {
		t.Errorf("the stream holds %d entries after the refused append, want 1 (%v)", n.Val(), n.Err())
	}

	assign()
	_, err = send(behind, "c2")
	if !errors.Is(err, eventstore.ErrSlotMoved) || !strings.Contains(err.Error(), "MOVED") {
		t.Fatalf("an append to the old master of its slot: %v, want ErrSlotMoved (MOVED)", err)
	}
	var first []eventstore.Event
	redistest.Eventually(t, 10*time.Second, "the append, sent again, lands", func() bool {
		out, err := send(behind, "c2")
		if err != nil && !errors.Is(err, eventstore.ErrSlotMoved) {
			t.Fatalf("sent again after the move: %v, want ErrSlotMoved or success", err)
		}
		first = out
		return err == nil
	})
	redistest.Eventually(t, 10*time.Second, "the other store answers it too", func() bool {
		again, err := send(s, "c2")
		if err != nil && !errors.Is(err, eventstore.ErrSlotMoved) {
			t.Fatalf("sent once more: %v", err)
		}
		if err == nil && again[0].StreamID != first[0].StreamID {
			t.Fatalf("sent once more: %s, want %s again", again[0].StreamID, first[0].StreamID)
		}
		return err == nil
	})
	var ids []string
	for _, e := range dst.XRange(ctx, key, "-", "+").Val() {
		ids = append(ids, fmt.Sprint(e.Values["entity_id"]))
	}
	if strings.Join(ids, " ") != "c1 c2" {
		t.Errorf("the new master's stream holds %v, want c1 c2 once each", ids)
	}
}
