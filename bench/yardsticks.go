package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/pkg/archive"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// envelope is the fields of a customer_created event as the event store
// writes them (see the README's Redis layout): what an append's XADD sends.
var envelope = []string{
	"event_id", "7e5f228e-378c-482f-b565-ea214d5c0dc2", "type", "customer_created", "entity_type", "customer",
	"entity_id", "017d3e65-33e5-45e4-80bd-d940891b5216", "version", "1", "time", "2026-11-22T16:11:58.194906568Z",
	"entity", `{"email":"load@example.com","id":"017d3e65-33e5-45e4-80bd-d940891b5216","name":"Load"}`,
	"meta.traceparent", "00-5f6f0226284c1ccfe6f8bc41727ec4e8-b7bfa66162c33c21-01",
}

// xaddScript is the least a script can do to append: one XADD of its
// arguments. Beside a plain XADD it shows what EVALSHA itself costs.
var xaddScript = redis.NewScript(`return redis.call('XADD', KEYS[1], '*', unpack(ARGV))`)

var rpsLine = regexp.MustCompile(`([0-9.]+) requests per second`)

// ops is what redis-benchmark measured: requests per second, and Redis's
// CPU time per request.
type ops struct {
	PerSecond float64
	CPU       time.Duration
}

// better is the one of two runs with more requests per second; its CPU is
// the smaller, which the machine's other work inflated less.
func (o ops) better(p ops) ops {
	if p.CPU > 0 && (o.CPU == 0 || p.CPU < o.CPU) {
		o.CPU = p.CPU
	}
	o.PerSecond = max(o.PerSecond, p.PerSecond)
	return o
}

// redisBenchmark runs redis-benchmark with conns clients and pipeline depth
// for n requests of args against rp. The key is deleted afterwards.
func redisBenchmark(ctx context.Context, rp *proc, rdb *redis.Client, conns, pipeline, n int, key string, args ...string) (ops, error) {
	host, port, _ := net.SplitHostPort(rdb.Options().Addr)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "redis-benchmark", append([]string{"-h", host, "-p", port, "-q",
		"-c", strconv.Itoa(conns), "-P", strconv.Itoa(pipeline), "-n", strconv.Itoa(n)}, args...)...)
	cpu := cpuTime(rp)
	out, err := cmd.CombinedOutput()
	cpu = cpuTime(rp) - cpu
	defer rdb.Del(context.Background(), key)
	if err != nil {
		return ops{}, fmt.Errorf("redis-benchmark %v: %v\n%s", args, err, out)
	}
	m := rpsLine.FindAllSubmatch(out, -1)
	if m == nil {
		return ops{}, fmt.Errorf("redis-benchmark %v: no requests per second in\n%s", args, out)
	}
	rps, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	return ops{PerSecond: rps, CPU: cpu / time.Duration(n)}, err
}

// xadd is redis-benchmark's XADD of an event's envelope.
func xadd(ctx context.Context, rp *proc, rdb *redis.Client, conns, pipeline, n int) (ops, error) {
	key := "bench:xadd"
	return redisBenchmark(ctx, rp, rdb, conns, pipeline, n, key, append([]string{"XADD", key, "*"}, envelope...)...)
}

// evalsha is redis-benchmark's EVALSHA of xaddScript with an event's envelope.
func evalsha(ctx context.Context, rp *proc, rdb *redis.Client, conns, pipeline, n int) (ops, error) {
	if err := xaddScript.Load(ctx, rdb).Err(); err != nil {
		return ops{}, err
	}
	key := "bench:evalsha"
	return redisBenchmark(ctx, rp, rdb, conns, pipeline, n, key, append([]string{"EVALSHA", xaddScript.Hash(), "1", key}, envelope...)...)
}

// backlog appends n customer_created events to the store's customer stream,
// through the event store, in batches.
func backlog(ctx context.Context, store *eventstore.Store, n int) error {
	const batch = 500
	for done := 0; done < n; {
		recs := make([]eventstore.Record, min(batch, n-done))
		for i := range recs {
			id := fmt.Sprintf("c%d", done+i)
			e, err := eventstore.NewEvent("customer_created", "customer", id,
				map[string]string{"email": "load@example.com", "id": id, "name": "Load"})
			if err != nil {
				return err
			}
			recs[i] = eventstore.Record{Event: e, Expected: eventstore.AnyVersion}
		}
		if _, err := store.Append(ctx, "customer", recs...); err != nil {
			return err
		}
		done += len(recs)
	}
	return nil
}

// rawDrain reads n entries of stream through a new group with XREADGROUP
// and acks them, each batch's XACK pipelined with the next read: the least
// a Go consumer does, one round trip per batch. It answers entries per
// second.
func rawDrain(ctx context.Context, rdb *redis.Client, stream, group string, n int, batch int64) (float64, error) {
	if err := rdb.XGroupCreate(ctx, stream, group, "0").Err(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	began := time.Now()
	var prev []string
	for read := 0; read < n; {
		p := rdb.Pipeline()
		if len(prev) > 0 {
			p.XAck(ctx, stream, group, prev...)
		}
		res := p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: group + "-1", Streams: []string{stream, ">"}, Count: batch, Block: -1})
		if _, err := p.Exec(ctx); err != nil {
			return 0, fmt.Errorf("raw drain after %d: %w", read, err)
		}
		prev = prev[:0]
		for _, m := range res.Val()[0].Messages {
			prev = append(prev, m.ID)
		}
		read += len(prev)
	}
	if err := rdb.XAck(ctx, stream, group, prev...).Err(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(began).Seconds(), nil
}

// storeDrain drains n events of the store's customer stream with the event
// store's own consumer and a handler that does nothing, and answers events
// per second: from its start until every event is handled and acked.
func storeDrain(ctx context.Context, store *eventstore.Store, group string, n int, batch int64) (float64, error) {
	var handled atomic.Int64
	c, err := store.NewConsumer(eventstore.ConsumerConfig{
		Group: group, Name: group + "-1", Streams: []string{"customer"}, Batch: batch,
		Handler: func(context.Context, eventstore.Event) error { handled.Add(1); return nil },
	})
	if err != nil {
		return 0, err
	}
	run, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	began := time.Now()
	go func() { stopped <- c.Run(run) }()
	err = poll(ctx, time.Minute, "no-op drain", func() bool { return handled.Load() >= int64(n) && drained(ctx, store, group) })
	elapsed := time.Since(began)
	stop()
	<-stopped
	if err != nil {
		return 0, fmt.Errorf("%w: %d of %d handled", err, handled.Load(), n)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// drained reports whether group has read and acked every entry of the
// store's customer stream.
func drained(ctx context.Context, store *eventstore.Store, group string) bool {
	groups, err := store.Redis().XInfoGroups(ctx, store.StreamKey("customer")).Result()
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g.Name == group {
			return g.Lag == 0 && g.Pending == 0
		}
	}
	return false
}

// archived is what the archiver does with the store's customer stream of n
// events: its rate into a PostgreSQL of its own (Debian's, as the tests
// start it), from its start until its group has archived and acked every
// entry, and the bytes an event takes there (table and key) and in the
// Redis stream.
type archived struct {
	PerSecond, PostgresBytes, RedisBytes float64
}

func archiveDrain(ctx context.Context, store *eventstore.Store, n int) (archived, error) {
	var out archived
	pg, err := pgtest.Run()
	if err != nil {
		return out, fmt.Errorf("PostgreSQL for the archive (apt-get install postgresql): %w", err)
	}
	defer pg.Close()
	db, err := pgxpool.New(ctx, pg.URL("postgres"))
	if err != nil {
		return out, err
	}
	defer db.Close()
	if err := archive.Migrate(ctx, db); err != nil {
		return out, err
	}
	a := &archive.Archiver{DB: db, Store: store, Streams: []string{"customer"}}
	run, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	began := time.Now()
	go func() { stopped <- a.Run(run) }()
	err = poll(ctx, 2*time.Minute, "archive", func() bool { return a.Rows() >= int64(n) && drained(ctx, store, archive.Group) })
	elapsed := time.Since(began)
	stop()
	<-stopped
	if err != nil {
		return out, fmt.Errorf("%w: %d of %d archived", err, a.Rows(), n)
	}
	out.PerSecond = float64(n) / elapsed.Seconds()
	var size int64
	if err := db.QueryRow(ctx, `SELECT pg_total_relation_size('events')`).Scan(&size); err != nil {
		return out, err
	}
	out.PostgresBytes = float64(size) / float64(n)
	key := store.StreamKey("customer")
	used, err := store.Redis().MemoryUsage(ctx, key, 0).Result()
	if err != nil {
		return out, err
	}
	out.RedisBytes = float64(used) / float64(n)
	return out, nil
}
