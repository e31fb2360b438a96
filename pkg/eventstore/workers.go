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
// entities' are handled beside them. A worker holds the lock of its slot
// while it handles an event, a lock the lanes and Replay share: at most
// Workers handlers run at once in a consumer, never two of one entity, and
// with one worker one at a time across lanes, as handlers may count on.
//
// The workers outlive a batch: the lane reads the next batch while they
// handle this one, and each slot's entries of the next batch wait for its
// entries of this one, so that a worker done early goes on with the next
// batch instead of waiting for the slowest. At most two batches are in the
// workers' hands: the lane reads a third only once the first is done, and
// then acks it (the checkpoint passes no entry still pending, whatever the
// batches after it did). When a read finds nothing new, the lane waits for
// the batch in the workers' hands, so that the next read may block.
//
// The hash is not the one that picks an entity's partition (FNV-1a), else
// with partitions a lane's entities would fall into a few of the slots only.

// maxBatches is how many batches the workers have at most.
const maxBatches = 2

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
	stream string
	work   context.Context // the handlers' context
	last   string          // the read's last ID, up to which the checkpoint may advance
	msgs   []redis.XMessage
	state  []atomic.Int32
	err    []error
	acked  []bool        // at a keep step; the lane's own
	done   chan struct{} // closed when the workers are done with it
}

// slotOf is the worker slot of an entity.
func (c *Consumer) slotOf(entityID string) int {
	if len(c.handling) == 1 {
		return 0
	}
	return int(maphash.String(c.seed, entityID) % uint64(len(c.handling)))
}

// dispatch hands a batch to the workers: each slot's entries go to a
// goroutine that starts once the slot's entries of the batches before are
// done.
func (c *Consumer) dispatch(ctx context.Context, b *batch) {
	b.state, b.err, b.acked = make([]atomic.Int32, len(b.msgs)), make([]error, len(b.msgs)), make([]bool, len(b.msgs))
	b.done = make(chan struct{})
	if c.tails == nil {
		c.tails = make([]chan struct{}, len(c.handling))
	}
	queues := make([][]int, len(c.handling))
	for i, m := range b.msgs {
		id, _ := m.Values[fieldEntityID].(string) // none: it fails to decode
		slot := c.slotOf(id)
		queues[slot] = append(queues[slot], i)
	}
	var wg sync.WaitGroup
	for slot, queue := range queues {
		if len(queue) == 0 {
			continue
		}
		before, tail := c.tails[slot], make(chan struct{})
		c.tails[slot] = tail
		wg.Go(func() {
			defer close(tail)
			if before != nil {
				<-before
			}
			c.worker(ctx, b, slot, queue)
		})
	}
	go func() { wg.Wait(); close(b.done) }()
	if len(c.batches) == 0 {
		c.kept = time.Now() // the entries' idle time starts at their delivery
	}
	c.batches = append(c.batches, b)
}

// settle waits until the workers have at most n batches, finishing the
// oldest ones as they are done. Every ClaimIdle/3 meanwhile it takes a keep
// step, which first sends the acks owed for the batches finished by then:
// no longer kept owned, they must not wait for the rest.
func (c *Consumer) settle(ctx context.Context, n int) {
	ctx = context.WithoutCancel(ctx)
	for len(c.batches) > n {
		select {
		case <-c.batches[0].done:
			b := c.batches[0]
			c.batches = c.batches[1:]
			c.finish(b)
		case <-time.After(time.Until(c.kept.Add(c.keepEvery()))):
			c.kept = time.Now()
			c.flush(ctx)
			for _, b := range c.batches {
				c.keepStep(b)
			}
			if err := c.keepRetriesOwned(ctx); err != nil {
				c.cfg.Logger.Warn("keeping retries owned failed", "group", c.cfg.Group, "err", err)
			}
		}
	}
}

// worker handles its entries of a batch in order, until a stop.
func (c *Consumer) worker(ctx context.Context, b *batch, slot int, queue []int) {
	for _, i := range queue {
		if ctx.Err() != nil {
			return
		}
		if !b.state[i].CompareAndSwap(waiting, running) {
			continue // taken: handling it too would be a second delivery
		}
		c.counts.consumed.Add(1)
		switch err := c.handleOne(b.work, slot, b.msgs[i]); {
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

// keepStep acks the entries of a batch handled by now, which would look
// idle too, and keeps the others owned, those in flight and failed
// included; those of them another consumer took before their turn are left
// to it.
func (c *Consumer) keepStep(b *batch) {
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
		c.ack(b.work, b.stream, done[len(done)-1], done)
	}
	if len(rest) > 0 {
		others := c.keepBatch(b.work, b.stream, rest)
		for i, m := range b.msgs {
			if others[m.ID] {
				b.state[i].CompareAndSwap(waiting, taken)
			}
		}
	}
}
