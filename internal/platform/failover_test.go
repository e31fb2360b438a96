package platform_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// A service on the Sentinels' settings rides out the loss of its primary:
// it is not ready and takes no commands while there is none, takes them
// again on the promoted replica without being restarted, and the events it
// acknowledged that had reached the replica are there.
func TestServiceTakesCommandsAgainAfterAFailover(t *testing.T) {
	t.Parallel()
	ss := redistest.NewSentinels(t)
	base := platformtest.Config(t)
	base.Partitions = 1
	base.RedisURL = "redis://127.0.0.1:6379/0" // the default: only its user, password and database count
	base.RedisSentinelMaster, base.RedisSentinelAddrs = ss.Master, ss.Addrs
	base.RedisDial, base.RedisRead, base.RedisWrite = time.Second, time.Second, time.Second
	opt, err := platform.RedisOptions(base)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opt)
	t.Cleanup(func() { rdb.Close() })
	var dials dialCount
	rdb.AddHook(&dials)
	app, srv, _ := platformtest.StartOn(t, "failover", base, rdb, platform.NoConfig{}, func(app *platform.App, _ platform.NoConfig) error {
		app.Router.Post("/things", platform.Handle(func(r *http.Request) (any, error) {
			id := uuid.NewString()
			e, err := eventstore.NewEvent("thing_happened", "thing", id, map[string]string{"id": id})
			if err != nil {
				return nil, err
			}
			events, err := app.Store.Append(r.Context(), "thing", eventstore.Record{Event: e, Expected: eventstore.AnyVersion})
			if err != nil {
				return nil, err
			}
			return events[0].StreamID, nil
		}))
		return nil
	})
	post := func() (int, string) {
		status, body, err := platformtest.Send("POST", srv.URL+"/things", nil)
		if err != nil {
			t.Fatal(err)
		}
		var id string
		json.Unmarshal(body, &id)
		return status, id
	}
	var acked []string
	for range 20 {
		status, id := post()
		if status != http.StatusOK {
			t.Fatalf("POST before the failover: %d", status)
		}
		acked = append(acked, id)
	}
	stream := app.Store.StreamKey(app.Store.FirstPartition("thing"))
	replica := ss.Replica.Client(t)
	redistest.Eventually(t, 10*time.Second, "the replica has the acknowledged events", func() bool {
		return replica.XLen(t.Context(), stream).Val() == int64(len(acked))
	})

	ss.Primary.Kill()
	killed := time.Now()
	redistest.Eventually(t, 10*time.Second, "/readyz is 503 without a primary", func() bool {
		status, _ := platformtest.Do(t, "GET", srv.Admin.URL+"/readyz", nil)
		return status == http.StatusServiceUnavailable
	})
	outage := dials.n.Load()
	redistest.Eventually(t, 30*time.Second, "a command is taken on the promoted replica", func() bool {
		status, id := post()
		if status == http.StatusOK {
			acked = append(acked, id)
		}
		return status == http.StatusOK
	})
	// go-redis backs off between dials and, after as many failed ones as
	// its pool holds connections, dials once a second: no hot loop.
	took, n := time.Since(killed), dials.n.Load()-outage
	t.Logf("commands taken again %v after the primary was killed; %d dials meanwhile", took.Round(10*time.Millisecond), n)
	if n > 20+int64(20*took.Seconds()) {
		t.Fatalf("%d dials in %v without a primary: a hot loop", n, took)
	}
	// The first Sentinel may hear of the new primary from the others a moment later.
	redistest.Eventually(t, 10*time.Second, "the Sentinels announce the replica", func() bool { return ss.PrimaryAddr(t) == ss.Replica.Addr })
	platformtest.JSON(t, "GET", srv.Admin.URL+"/readyz", nil, http.StatusOK, nil)

	events, _, err := app.Store.Read(t.Context(), app.Store.FirstPartition("thing"), "0", 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range events {
		ids = append(ids, e.StreamID)
	}
	for _, id := range acked {
		if !slices.Contains(ids, id) {
			t.Fatalf("acknowledged event %s is lost: the stream holds %v", id, ids)
		}
	}
}

// dialCount is a client hook that counts the client's dials.
type dialCount struct{ n atomic.Int64 }

func (d *dialCount) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.n.Add(1)
		return next(ctx, network, addr)
	}
}

func (*dialCount) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (*dialCount) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
