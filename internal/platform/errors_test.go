package platform_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// kinded is a domain's error as a domain without HTTP writes one: its own
// message, and a kind of platform's.
type kinded struct {
	kind error
	msg  string
}

func (e kinded) Error() string { return e.msg }
func (e kinded) Unwrap() error { return e.kind }

// A domain's error is answered with the status of its kind and its own
// message, byte for byte, and is not logged.
func TestDomainErrorKindsMapToStatuses(t *testing.T) {
	for kind, want := range map[error]int{
		platform.ErrInvalid:  http.StatusBadRequest,
		platform.ErrTooLarge: http.StatusRequestEntityTooLarge,
		platform.ErrRefused:  http.StatusConflict,
	} {
		err := kinded{kind, fmt.Sprintf("name %q is wrong", "a\"b")}
		status, msg, logged := platform.StatusOf(err)
		if status != want || msg != err.msg || logged {
			t.Errorf("%v: %d %q logged %v, want %d %q not logged", kind, status, msg, logged, want, err.msg)
		}
	}
	if status, _, _ := platform.StatusOf(fmt.Errorf("commit: %w", eventstore.ErrTooLate)); status != http.StatusServiceUnavailable {
		t.Errorf("an append past its deadline: %d, want 503 (nothing was written: safe to send again)", status)
	}
	if status, _, _ := platform.StatusOf(fmt.Errorf("%w: %w", eventstore.ErrSlotMoved, errors.New("MOVED 1597 redis-5:6379"))); status != http.StatusServiceUnavailable {
		t.Errorf("an append sent to a node that lost its slot in a failover: %d, want 503 (nothing was written: safe to send again)", status)
	}
	if status, _, _ := platform.StatusOf(errors.New("invalid")); status != http.StatusInternalServerError {
		t.Errorf("an error of no kind: %d, want 500", status)
	}
}

// Redis refusing a command while it fails over (a replica asked to write, a
// primary without the replicas min-replicas-to-write wants, a cluster
// without a master for a slot) ran nothing: 503, safe to send again, not 500.
func TestRefusalsOfAFailoverAre503(t *testing.T) {
	ctx := context.Background()
	primary := redistest.NewServer(t)
	replica := redistest.NewReplica(t, primary.Addr)
	onPrimary, onReplica := primary.Client(t), replica.Client(t)
	redistest.Eventually(t, 30*time.Second, "the replica in sync", func() bool {
		info, _ := onReplica.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	readonly := onReplica.Set(ctx, "k", "v", 0).Err()
	onPrimary.ConfigSet(ctx, "min-replicas-to-write", "2")
	noreplicas := onPrimary.Set(ctx, "k", "v", 0).Err()
	for name, err := range map[string]error{"READONLY": readonly, "NOREPLICAS": noreplicas} {
		if !redis.HasErrorPrefix(err, name) {
			t.Fatalf("want a %s refusal from Redis, got %v", name, err)
		}
		if status, _, _ := platform.StatusOf(fmt.Errorf("append: %w", err)); status != http.StatusServiceUnavailable {
			t.Errorf("%v: %d, want 503", err, status)
		}
	}
	if n := onPrimary.Exists(ctx, "k").Val(); n != 0 {
		t.Errorf("a refused write wrote: %d keys", n)
	}
	// The cluster's replies, as a real Redis sends them (a script's error
	// reply; a cluster is not made here).
	for _, reply := range []string{"CLUSTERDOWN The cluster is down", "TRYAGAIN Multiple keys request during rehashing of slot",
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."} {
		err := onPrimary.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, reply).Err()
		if status, _, _ := platform.StatusOf(fmt.Errorf("append: %w", err)); err == nil || status != http.StatusServiceUnavailable {
			t.Errorf("%v: %d, want 503", err, status)
		}
	}
}
