package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// redis-server SIGKILLed in the middle of a burst of appends loses none it
// had acknowledged, with appendfsync always and with everysec (the compose
// Redis's): Redis writes the AOF before it answers, and a killed process's
// writes are the kernel's; everysec risks the last second only when the
// machine itself goes down.
func TestAcknowledgedAppendsOutliveASIGKILLOfRedis(t *testing.T) {
	t.Parallel()
	for _, fsync := range []string{"always", "everysec"} {
		t.Run(fsync, func(t *testing.T) {
			t.Parallel()
			srv := redistest.NewServer(t)
			rdb := srv.Client(t)
			if err := rdb.ConfigSet(context.Background(), "appendfsync", fsync).Err(); err != nil {
				t.Fatal(err)
			}
			s := eventstore.New(rdb, "")
			var (
				mu    sync.Mutex
				acked = map[string]string{} // stream ID → event ID
				wg    sync.WaitGroup
			)
			ctx, cancel := context.WithCancel(context.Background())
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						e, err := eventstore.NewEvent("customer_created", "customer", fmt.Sprintf("w%d-%d", w, i), map[string]int{"n": i})
						if err != nil {
							panic(err)
						}
						out, err := s.Append(ctx, "customer", eventstore.Record{Event: e, Expected: eventstore.NoEntity})
						if err == nil {
							mu.Lock()
							acked[out[0].StreamID] = out[0].ID
							mu.Unlock()
						}
					}
				}()
			}
			redistest.Eventually(t, 30*time.Second, "500 appends acknowledged", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(acked) >= 500
			})
			srv.Kill() // the writers still writing
			cancel()
			wg.Wait()
			srv.Start(t)

			got := map[string]string{}
			if err := s.Replay(context.Background(), "customer", "0", func(events []eventstore.Event) error {
				for _, e := range events {
					got[e.StreamID] = e.ID
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			lost := 0
			for id, event := range acked {
				if got[id] != event {
					lost++
				}
			}
			if lost > 0 {
				t.Fatalf("%d of %d acknowledged appends lost to a SIGKILL with appendfsync %s", lost, len(acked), fsync)
			}
			t.Logf("appendfsync %s: %d acknowledged, %d in the stream after the restart, none lost", fsync, len(acked), len(got))
		})
	}
}

// BenchmarkAppendFsync is what appendfsync costs appends, 16 at a time
// (group commit shares an fsync among the appends of one script run):
//
//	go test -run '^$' -bench AppendFsync -benchtime 2s ./pkg/eventstore/
func BenchmarkAppendFsync(b *testing.B) {
	for _, fsync := range []string{"always", "everysec"} {
		b.Run(fsync, func(b *testing.B) {
			srv := redistest.NewServer(b)
			rdb := srv.Client(b)
			if err := rdb.ConfigSet(context.Background(), "appendfsync", fsync).Err(); err != nil {
				b.Fatal(err)
			}
			s := eventstore.New(rdb, "")
			b.SetParallelism(8) // 16 writers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					e, err := eventstore.NewEvent("customer_created", "customer", fmt.Sprint(time.Now().UnixNano(), i), map[string]int{"n": i})
					if err == nil {
						_, err = s.Append(context.Background(), "customer", eventstore.Record{Event: e, Expected: eventstore.AnyVersion})
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}
