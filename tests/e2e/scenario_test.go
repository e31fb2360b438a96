package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/tests/scenario"
)

// The original client's scenario, through the gateway of the containers,
// whose Redis knows each service by its own user and nobody else, and whose
// events reach the archive in PostgreSQL (ARCHIVE_URL, the archive service).
func TestOriginalScenario(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	scenario.Original(t, s.Gateway)

	ctx := context.Background()
	var ids []string
	for _, c := range s.Gateway.List(t, "/customers") {
		ids = append(ids, fmt.Sprint(c["id"]))
	}
	db, err := pgx.Connect(ctx, s.PostgresURL())
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	defer db.Close(ctx)
	var archived int
	s.waitFor(30*time.Second, 100*time.Millisecond, fmt.Sprintf("the creation of the %d customers in the archive", len(ids)), func() bool {
		// Before the archive service made the table, an error: not yet.
		err := db.QueryRow(ctx, "SELECT count(DISTINCT entity_id) FROM events WHERE type = 'customer_created' AND entity_id = ANY($1)", ids).Scan(&archived)
		return err == nil && archived == len(ids)
	})

	for _, who := range []struct{ user, password, want string }{
		{"", "", "NOAUTH"}, {"customer", s.passwords["order"], "WRONGPASS"},
	} {
		rdb := redis.NewClient(&redis.Options{Addr: s.addr("redis"), Username: who.user, Password: who.password, MaxRetries: -1})
		if err := rdb.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), who.want) {
			t.Errorf("PING as %q: %v, want %s", who.user, err, who.want)
		}
		rdb.Close()
	}
	gw := redis.NewClient(&redis.Options{Addr: s.addr("redis"), Username: "gateway", Password: s.passwords["gateway"], MaxRetries: -1})
	defer gw.Close()
	if n, err := gw.SCard(ctx, "{customer}:customer_ids").Result(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("the gateway's SCARD (not among its commands): %d, %v", n, err)
	}
	if err := gw.SAdd(ctx, "{customer}:customer_ids", "x").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("the gateway's SADD: %v, want NOPERM", err)
	}
}
