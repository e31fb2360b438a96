package eventstore_test

import (
	"context"
	"testing"

	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// A consumer decides to dead-letter an entry it owns, and before it moves
// it another consumer of the group claims it (the first was slow): the
// move must not happen, or the entry would be dead-lettered twice, once by
// each, and acked away from its new owner.
func TestAnEntryClaimedByAnotherIsNotDeadLetteredByTheFirst(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	appendN(t, s, "customer", 1)
	key := s.StreamKey("customer")
	rdb := s.Redis()
	if err := rdb.XGroupCreate(ctx, key, "crm", "0").Err(); err != nil {
		t.Fatal(err)
	}
	consumer := func(name string) *eventstore.Consumer {
		c, err := s.NewConsumer(eventstore.ConsumerConfig{Group: "crm", Name: name, Streams: []string{"customer"},
			Handler: func(context.Context, eventstore.Event) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, second := consumer("c1"), consumer("c2")
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crm", Consumer: "c1", Streams: []string{key, ">"}, Count: 1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	m := res[0].Messages[0]
	if err := rdb.XClaim(ctx, &redis.XClaimArgs{Stream: key, Group: "crm", Consumer: "c2", Messages: []string{m.ID}}).Err(); err != nil {
		t.Fatal(err)
	}
	moved, err := eventstore.MoveToDeadLetters(first, ctx, "customer", m)
	if err != nil || moved {
		t.Fatalf("the first consumer moved the entry it no longer owns: %v, %v", moved, err)
	}
	if moved, err = eventstore.MoveToDeadLetters(second, ctx, "customer", m); err != nil || !moved {
		t.Fatalf("its owner did not move it: %v, %v", moved, err)
	}
	if n, err := rdb.XLen(ctx, s.DeadLetterKey("customer", "crm")).Result(); err != nil || n != 1 {
		t.Fatalf("%d dead letters (%v), want 1", n, err)
	}
	if p, err := rdb.XPending(ctx, key, "crm").Result(); err != nil || p.Count != 0 {
		t.Fatalf("pending after the move: %v, %v", p, err)
	}
}
