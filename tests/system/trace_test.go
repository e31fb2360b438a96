package system

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/platform/platformtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

var traceparent = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// One trace follows a new customer from the client's request through the
// gateway and the customer service to its customer_created event, and on
// through crm's handling of it and its call to msg to the welcome mail's
// event. A request without a traceparent gets a trace from the gateway,
// which goes the same way.
func TestATraceFollowsACustomerToItsWelcomeMail(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	rdb, _ := redistest.Client(t)
	store := eventstore.New(rdb, s.prefix, eventstore.WithPartitions(redistest.Partitions()))
	for _, c := range []struct{ name, traceID string }{
		{"the client's trace", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"a trace the gateway starts", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			header := http.Header{}
			const clientSpan = "00f067aa0ba902b7"
			if c.traceID != "" {
				header.Set("traceparent", "00-"+c.traceID+"-"+clientSpan+"-01")
			}
			email := strings.ReplaceAll(c.name, " ", "-") + "@example.com"
			status, _, body, err := platformtest.SendWith("POST", s.URL+"/customers", []map[string]string{{"name": "Traced", "email": email}}, header)
			if err != nil || status != http.StatusOK {
				t.Fatalf("POST /customers: %v %d %s", err, status, body)
			}
			var ids []string
			if err := json.Unmarshal(body, &ids); err != nil || len(ids) != 1 {
				t.Fatalf("POST /customers answered %s", body)
			}

			created := find(t, store, "customer", func(e eventstore.Event) bool { return e.EntityID == ids[0] })
			tp := traceparent.FindStringSubmatch(created.Meta["traceparent"])
			if tp == nil {
				t.Fatalf("customer_created carries traceparent %q", created.Meta["traceparent"])
			}
			traceID := tp[1]
			if c.traceID != "" && (traceID != c.traceID || tp[2] == clientSpan) {
				t.Fatalf("customer_created carries %s, want a span of the client's trace %s", tp[0], c.traceID)
			}
			if c.traceID == "" {
				// Its log line is written out within 100 ms.
				redistest.Eventually(t, 5*time.Second, "the gateway's log line of the request of trace "+traceID+", which customer_created carries",
					func() bool { return s.logged(t, "gateway", traceID) })
			}

			var mail eventstore.Event
			redistest.Eventually(t, 20*time.Second, "the welcome mail", func() bool {
				mail = find(t, store, "email", func(e eventstore.Event) bool {
					var m struct{ To, Key string }
					return e.Decode(&m) == nil && m.To == email && m.Key == created.ID+":welcome"
				})
				return mail.ID != ""
			})
			if got := traceparent.FindStringSubmatch(mail.Meta["traceparent"]); got == nil || got[1] != traceID {
				t.Fatalf("the welcome mail's event carries traceparent %q, want one of trace %s", mail.Meta["traceparent"], traceID)
			}
		})
	}
}

// find is the first event of a stream that match says is the one, or none.
func find(t *testing.T, store *eventstore.Store, typ string, match func(eventstore.Event) bool) eventstore.Event {
	t.Helper()
	var found eventstore.Event
	err := store.ReplayAll(t.Context(), typ, func(events []eventstore.Event) error {
		for _, e := range events {
			if found.ID == "" && match(e) {
				found = e
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// logged says whether a service logged a request of the trace.
func (s *system) logged(t *testing.T, name, traceID string) bool {
	for _, l := range s.logLines(t, name) {
		if l.Msg == "request" && l.TraceID == traceID {
			return true
		}
	}
	return false
}
