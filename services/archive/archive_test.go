package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	pgtest.Stop()
	os.Exit(code)
}

// service is the archive service under test, and a writer of events on its
// keys as the owning services write them.
type service struct {
	app   *platform.App
	srv   *platformtest.Server
	db    *pgxpool.Pool // nil without an archive
	cache *entitycache.Cache
}

// start starts the service, on the archive of dbURL unless it is "".
func start(t *testing.T, cfg config, dbURL string) service {
	t.Helper()
	base := platformtest.Config(t)
	var db *pgxpool.Pool
	if dbURL != "" {
		var err error
		if db, err = pgxpool.New(context.Background(), dbURL); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
	}
	app, srv := platformtest.Start(t, "archive", base, cfg, func(app *platform.App, cfg config) error {
		if db != nil {
			app.UseArchive(db) // as platform.Run does with ARCHIVE_URL
		}
		return wire(app, cfg)
	})
	rdb, _ := redistest.Client(t)
	return service{app: app, srv: srv, db: db,
		cache: entitycache.New(eventstore.New(rdb, base.KeyPrefix, eventstore.WithPartitions(base.Partitions)))}
}

// write writes n customers and n mails, and returns how many events.
func (s service) write(t *testing.T, n int) int {
	t.Helper()
	for i := range n {
		platformtest.Created(t, s.cache, shop.Customers.Kind, shop.Customer{Name: "Ada", Email: "ada@example.com"})
		mail, err := shop.NewEmail("ada@example.com", "Hello", fmt.Sprintf("key-%d-%d", time.Now().UnixNano(), i))
		if err != nil {
			t.Fatal(err)
		}
		platformtest.Created(t, s.cache, shop.Emails.Kind, mail)
	}
	return 2 * n
}

// archived is how many events the archive holds.
func (s service) archived(t *testing.T) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil &&
		!strings.Contains(err.Error(), "does not exist") { // the archiver has not made its table yet
		t.Fatal(err)
	}
	return n
}

// lengths are the entries of every partition of every stream.
func (s service) lengths(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	store := s.app.Store
	for _, p := range shop.Domain.Partitions(store) {
		n, err := store.Redis().XLen(context.Background(), store.StreamKey(p)).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[p] = n
	}
	return out
}

// passes is how many trim passes the service has made in full: each counts
// every partition, trimmed or not.
func (s service) passed(t *testing.T) bool {
	t.Helper()
	n, err := testutil.GatherAndCount(s.app.Metrics.Registry, "ordershop_archive_trimmed_total")
	if err != nil {
		t.Fatal(err)
	}
	return n == len(shop.Domain.Partitions(s.app.Store))
}

func TestEventsAreArchivedAndTheStreamsTrimmedOnceArchived(t *testing.T) {
	t.Parallel()
	s := start(t, config{Hot: 0, TrimEvery: 20 * time.Millisecond, Batch: 7}, pgtest.URL(t))
	written := s.write(t, 20)
	redistest.Eventually(t, 30*time.Second, "every event archived", func() bool { return s.archived(t) == written })
	// All archived and read by every group: each partition keeps its last
	// entry only, the watermark.
	redistest.Eventually(t, 30*time.Second, "every stream trimmed to its last entry", func() bool {
		for _, n := range s.lengths(t) {
			if n > 1 {
				return false
			}
		}
		return true
	})
	if n := s.archived(t); n != written {
		t.Errorf("the archive holds %d events, want %d", n, written)
	}
	// Redis still tells the group's lag of a trimmed stream.
	for _, p := range shop.Domain.Partitions(s.app.Store) {
		if lag := s.metric(t, "ordershop_consumer_group_lag", s.app.Store.StreamKey(p)); lag != 0 {
			t.Errorf("lag of group archive on %s: %v, want 0", p, lag)
		}
	}
	// What is written after a trim is archived too.
	more := s.write(t, 5)
	redistest.Eventually(t, 30*time.Second, "the later events archived", func() bool { return s.archived(t) == written+more })
}

func TestTheHotWindowStaysInRedis(t *testing.T) {
	t.Parallel()
	s := start(t, config{Hot: time.Hour, TrimEvery: 20 * time.Millisecond, Batch: 500}, pgtest.URL(t))
	written := s.write(t, 10)
	redistest.Eventually(t, 30*time.Second, "every event archived", func() bool { return s.archived(t) == written })
	redistest.Eventually(t, 10*time.Second, "a trim pass", func() bool { return s.passed(t) })
	total := int64(0)
	for _, n := range s.lengths(t) {
		total += n
	}
	if total != int64(written) {
		t.Errorf("the streams hold %d entries after a trim, want all %d: they are younger than HOT_RETENTION", total, written)
	}
}

// A consumer group that never read holds every entry in Redis, archived or
// not; once it reads, the trim follows it up to where it is.
func TestAGroupBehindStopsTheTrim(t *testing.T) {
	t.Parallel()
	s := start(t, config{Hot: 0, TrimEvery: 20 * time.Millisecond, Batch: 500}, pgtest.URL(t))
	ctx, rdb, store := context.Background(), s.app.Store.Redis(), s.app.Store
	parts := store.Partitions(shop.Customers.StreamName())
	for _, p := range parts {
		if err := rdb.XGroupCreateMkStream(ctx, store.StreamKey(p), "crm", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	written := s.write(t, 20)
	redistest.Eventually(t, 30*time.Second, "every event archived", func() bool { return s.archived(t) == written })
	redistest.Eventually(t, 30*time.Second, "the mails trimmed", func() bool {
		for _, p := range store.Partitions(shop.Emails.StreamName()) {
			if s.lengths(t)[p] > 1 {
				return false
			}
		}
		return true
	})
	total := int64(0)
	for _, p := range parts {
		total += s.lengths(t)[p]
	}
	if total != int64(written/2) {
		t.Fatalf("the customers' streams hold %d entries, want all %d: crm read none", total, written/2)
	}

	// crm reads two entries of each partition.
	want := map[string]string{}
	for _, p := range parts {
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crm", Consumer: "crm-1", Streams: []string{store.StreamKey(p), ">"}, Count: 2}).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		for _, r := range res {
			for _, m := range r.Messages {
				rdb.XAck(ctx, r.Stream, "crm", m.ID)
				want[p] = m.ID
			}
		}
	}
	redistest.Eventually(t, 30*time.Second, "the customers trimmed up to crm's last read", func() bool {
		for p, id := range want {
			first, err := rdb.XRangeN(ctx, store.StreamKey(p), "-", "+", 1).Result()
			if err != nil || len(first) != 1 || first[0].ID != id {
				return false
			}
		}
		return true
	})
}

func TestWithoutAnArchiveTheServiceIsReadyAndTrimsNothing(t *testing.T) {
	t.Parallel()
	s := start(t, config{Hot: 0, TrimEvery: 20 * time.Millisecond, Batch: 500}, "")
	if status, _ := platformtest.Do(t, "GET", s.srv.Admin.URL+"/readyz", nil); status != http.StatusOK {
		t.Fatalf("readyz: %d", status)
	}
	written := s.write(t, 5)
	total := int64(0)
	for p, n := range s.lengths(t) {
		total += n
		groups, err := s.app.Store.Redis().XInfoGroups(context.Background(), s.app.Store.StreamKey(p)).Result()
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			t.Fatal(err)
		}
		if len(groups) != 0 {
			t.Errorf("%s has groups %v, want none", p, groups)
		}
	}
	if total != int64(written) {
		t.Errorf("the streams hold %d entries, want %d", total, written)
	}
}

// The service is ready only while it reaches PostgreSQL.
func TestNotReadyWithoutPostgreSQL(t *testing.T) {
	t.Parallel()
	pg := pgtest.NewServer(t)
	s := start(t, config{Hot: 0, TrimEvery: time.Second, Batch: 500}, pg.Database(t))
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "not ready", func() bool {
		status, body := platformtest.Do(t, "GET", s.srv.Admin.URL+"/readyz", nil)
		return status == http.StatusServiceUnavailable && strings.Contains(string(body), "archive unreachable")
	})
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, "ready again", func() bool {
		status, _ := platformtest.Do(t, "GET", s.srv.Admin.URL+"/readyz", nil)
		return status == http.StatusOK
	})
}

func TestTheMetricsCountWhatWasArchived(t *testing.T) {
	t.Parallel()
	s := start(t, config{Hot: time.Hour, TrimEvery: 20 * time.Millisecond, Batch: 500}, pgtest.URL(t))
	written := s.write(t, 10)
	redistest.Eventually(t, 30*time.Second, "every event archived and counted", func() bool {
		return s.archived(t) == written && s.metric(t, "ordershop_archive_rows_total", "") == float64(written)
	})
	if n := s.metric(t, "ordershop_archive_bytes_total", ""); n <= 0 {
		t.Errorf("bytes archived: %v, want more than 0", n)
	}
	lag, streams := 0.0, 0
	for _, p := range shop.Domain.Partitions(s.app.Store) {
		if s.metric(t, "ordershop_consumer_group_lag", s.app.Store.StreamKey(p)) >= 0 {
			streams++
		}
		lag += s.metric(t, "ordershop_consumer_group_lag", s.app.Store.StreamKey(p))
	}
	if lag != 0 || streams != len(shop.Domain.Partitions(s.app.Store)) {
		t.Errorf("lag of group archive: %v on %d streams, want 0 on every stream once all is archived", lag, streams)
	}
}

// metric is the value of a series of the service's metrics, of group
// archive and the stream's key when stream is not "", -1 if there is none.
func (s service) metric(t *testing.T, name, stream string) float64 {
	t.Helper()
	families, err := s.app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if stream != "" && (l.GetName() == "stream" && l.GetValue() != stream || l.GetName() == "group" && l.GetValue() != "archive") {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
