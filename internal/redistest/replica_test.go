package redistest_test

import (
	"os"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestAReplicaHasTheMastersWritesUntilItIsKilled(t *testing.T) {
	master := redistest.NewServer(t)
	rdb := master.Client(t)
	ctx := t.Context()
	replica := redistest.NewReplica(t, master.Addr)
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d replicas, %v", n, err)
	}
	if v := replica.Client(t).Get(ctx, "k").Val(); v != "v" {
		t.Fatalf("the replica has k = %q after WAIT, want v", v)
	}
	replica.Kill()
	rdb.Set(ctx, "k", "w", 0)
	start := time.Now()
	if n, err := rdb.Wait(ctx, 1, 200*time.Millisecond).Result(); err != nil || n != 0 {
		t.Fatalf("WAIT 1 with the replica killed: %d replicas, %v", n, err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("WAIT answered in %v, before its timeout", took)
	}
}
