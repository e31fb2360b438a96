package eventstore

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A lane hands each batch to Workers workers, by a hash of the entry's
// entity id: a worker handles its entries one after another in stream
// order, so that each entity's events keep their order, while other
// entities' are handled beside them. The lane reads the next batch only when
// every worker is done with this one. A worker holds the lock of its slot
// while it handles an event, a lock the lanes and Replay share: at most
// Workers handlers run at once in a consumer, never two of one entity, and
// with one worker one at a time across lanes, as handlers may count on.
//
// The hash is not the one that picks an entity's partition (FNV-1a), else
// with partitions a lane's entities would fall into a few of the slots only.

// The states of a batch's entry.
const (
	waiting int32 = iota // for its worker
	running
	handled // succeeded or skipped: to ack
	failed
	taken // by another consumer before its turn: left to it
)

// batch is a batch in the workers' hands. The workers write the state (and
// before it the error) of their entries; the lane reads them.
type batch struct {
	msgs  []redis.XMessage
	state []atomic.Int32
	err   []error
	acked []bool // at a keep step; the lane's own
}

// slotOf is the worker slot of an entity.
func (c *Consumer) slotOf(entityID string) int {
	if len(c.handling) == 1 {
		return 0
	}
	return int(maphash.String(c.seed, entityID) % uint64(len(c.handling)))
}

// work hands the entries to the workers and waits until they are done. Every
// ClaimIdle/3 meanwhile it takes a keep step.
func (c *Consumer) work(ctx, work context.Context, stream string, msgs []redis.XMessage) *batch {
	b := &batch{msgs: msgs, state: make([]atomic.Int32, len(msgs)), err: make([]error, len(msgs)), acked: make([]bool, len(msgs))}
	queues := make([][]int, len(c.handling))
	for i, m := range msgs {
		id, _ := m.Values[fieldEntityID].(string) // none: it fails to decode
		slot := c.slotOf(id)
		queues[slot] = append(queues[slot], i)
	}
	var wg sync.WaitGroup
	for slot, queue := range queues {
		if len(queue) > 0 {
			wg.Go(func() { c.worker(ctx, work, b, slot, queue) })
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	keep := time.NewTicker(c.keepEvery())
	defer keep.Stop()
	for {
		select {
		case <-finished:
			return b
		case <-keep.C:
			c.keepStep(work, stream, b)
		}
	}
}

// worker handles its entries of a batch in order, until a stop.
func (c *Consumer) worker(ctx, work context.Context, b *batch, slot int, queue []int) {
	for _, i := range queue {
		if ctx.Err() != nil {
			return
		}
		if !b.state[i].CompareAndSwap(waiting, running) {
			continue // taken: handling it too would be a second delivery
		}
		c.counts.consumed.Add(1)
		switch err := c.handleOne(work, slot, b.msgs[i]); {
		case errors.Is(err, ErrSkip):
			c.counts.skipped.Add(1) // the router's Logging middleware says why
			b.state[i].Store(handled)
		case err != nil:
			c.counts.failed.Add(1)
			b.err[i] = err
			b.state[i].Store(failed)
		default:
			c.counts.succeeded.Add(1)
			b.state[i].Store(handled)
		}
	}
}

// keepStep acks the entries handled by now, which would look idle too, and
// keeps the others owned, those in flight and failed included; those of them
// another consumer took before their turn are left to it. It also keeps the
// waiting retries owned.
func (c *Consumer) keepStep(ctx context.Context, stream string, b *batch) {
	var done []string
	var rest []redis.XMessage
	for i, m := range b.msgs {
		switch b.state[i].Load() {
		case handled:
			if !b.acked[i] {
				b.acked[i] = true
				done = append(done, m.ID)
			}
		case waiting, running, failed:
			rest = append(rest, m)
		}
	}
	if len(done) > 0 {
		c.ack(ctx, stream, done[len(done)-1], done)
	}
	if len(rest) > 0 {
		others := c.keepBatch(ctx, stream, rest)
		for i, m := range b.msgs {
			if others[m.ID] {
				b.state[i].CompareAndSwap(waiting, taken)
			}
		}
	}
	if err := c.keepRetriesOwned(ctx); err != nil {
		c.cfg.Logger.Warn("keeping retries owned failed", "group", c.cfg.Group, "err", err)
	}
}
