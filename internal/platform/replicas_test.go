package platform_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
)

// With REDIS_MIN_REPLICAS=1, a command that no replica confirms in time is
// a 503 whose JSON says it is safe to send again with its Idempotency-Key,
// and so is its retry while none does, whether it appends again (POST: the
// marker answers) or finds its first try done (PUT: Appended). Sent again
// once a replica is back, each answers as its first try would have, and
// the stream holds one event of each. Not parallel: the replica would
// confirm other tests' appends on the shared Redis too.
func TestACommandNoReplicaConfirmsIs503AndSafeToSendAgain(t *testing.T) {
	type body struct{ Name, Email string }
	base := platformtest.Config(t)
	base.Partitions, base.MinReplicas, base.ReplicaTimeout = 1, 1, time.Second
	rdb, _ := redistest.Client(t)
	app, srv, _ := platformtest.StartOn(t, "customer", base, rdb, platform.NoConfig{}, func(app *platform.App, _ platform.NoConfig) error {
		platform.Commands(app, platform.Rules[body, shop.Customer]{Resource: shop.Customers,
			Build: func(_ context.Context, _ string, b body) (shop.Customer, error) {
				return shop.NewCustomer(b.Name, b.Email)
			}})
		return nil
	})
	stream := app.Store.StreamKey("customer")
	send := func(method, path, key string) (int, string) {
		status, _, data, err := platformtest.SendWith(method, srv.URL+path, body{"Ada", "ada@example.com"},
			http.Header{platform.IdempotencyHeader: {key}})
		if err != nil {
			t.Fatal(err)
		}
		return status, string(data)
	}
	replica := redistest.ReplicaOf(t, rdb, stream)
	var ids []string
	if status, answer := send("POST", "/customer", "k0"); status != http.StatusOK || json.Unmarshal([]byte(answer), &ids) != nil {
		t.Fatalf("POST with a replica: %d %s", status, answer)
	}

	replica.Kill()
	for _, path := range []string{"POST /customer", "PUT /customer/" + ids[0]} {
		method, path, _ := strings.Cut(path, " ")
		for try := range 2 {
			status, answer := send(method, path, "k1")
			var e struct{ Error string }
			json.Unmarshal([]byte(answer), &e)
			if want := "written, but not confirmed by enough Redis replicas in time: safe to send again with the same Idempotency-Key"; status != http.StatusServiceUnavailable || e.Error != want {
				t.Fatalf("%s %s, try %d, with no replica: %d %s, want 503 and %q", method, path, try+1, status, answer, want)
			}
		}
	}

	redistest.ReplicaOf(t, rdb, stream)
	if status, answer := send("POST", "/customer", "k1"); status != http.StatusOK {
		t.Fatalf("POST again with a replica: %d %s", status, answer)
	}
	if status, answer := send("PUT", "/customer/"+ids[0], "k1"); status != http.StatusOK {
		t.Fatalf("PUT again with a replica: %d %s", status, answer)
	}
	var got []string
	for _, m := range rdb.XRange(t.Context(), stream, "-", "+").Val() {
		got = append(got, m.Values["type"].(string))
	}
	if !slices.Equal(got, []string{"customer_created", "customer_created", "customer_updated"}) {
		t.Errorf("the stream holds %v, want the first POST's, the second's and the PUT's", got)
	}
}
