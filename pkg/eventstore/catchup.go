package eventstore

import (
	"context"
	"errors"
	"fmt"
)

// catchUp hands the handler, in order, the archived events that a group is
// behind its streams' starts by (with an archive, UseArchive): those after
// the group's last delivered entry and before the stream's first entry,
// which a trim took out of Redis. A group is that far behind when it was
// created from the start or from its checkpoint after the stream was
// trimmed. A trim never goes past a group's last delivered entry (see
// archive.TrimPoint), so once the group exists nothing more goes below it;
// the stream's first entry is read again before each page all the same,
// for a trim that chose its point before the group was there. The group
// then reads the stream as ever, from its first entry.
//
// The events go to the handler one at a time, in the slot of their entity.
// One that fails ends the session: after its backoff it is handed again,
// with those after it, and those before it too, as the group's last
// delivered entry stays where it was until it reads the stream.
func (c *Consumer) catchUp(ctx context.Context) error {
	if c.store.archive == nil {
		return nil
	}
	for _, s := range c.cfg.Streams {
		if err := c.catchUpOn(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// catchUpOn is catchUp on one stream. It asks the archive only when the
// stream lost entries and the group's last delivered one lies below the
// first left: in Redis alone, XINFO tells.
func (c *Consumer) catchUpOn(ctx context.Context, stream string) error {
	key := c.store.StreamKey(stream)
	from, err := c.lastDelivered(ctx, stream)
	if err != nil {
		return err
	}
	work := withStream(context.WithoutCancel(ctx), key)
	for ctx.Err() == nil {
		info, err := c.store.rdb.XInfoStream(ctx, key).Result()
		if err != nil {
			return err
		}
		// An empty stream has no first entry, and a trim leaves one.
		if info.EntriesAdded == info.Length || !IDBefore(from, info.FirstEntry.ID) {
			return nil
		}
		events, err := c.store.archive.Archived(ctx, stream, from, info.FirstEntry.ID, int(c.cfg.Batch))
		if err != nil || len(events) == 0 {
			return err
		}
		for _, e := range events {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.counts.consumed.Add(1)
			switch err := c.handleEvent(work, c.slotOf(e.EntityID), e); {
			case errors.Is(err, ErrSkip):
				c.counts.skipped.Add(1)
			case err != nil:
				c.counts.failed.Add(1)
				return fmt.Errorf("catch up %s from the archive at %s: %w", stream, e.StreamID, err)
			default:
				c.counts.succeeded.Add(1)
			}
		}
		from = events[len(events)-1].StreamID
	}
	return ctx.Err()
}

// lastDelivered is the ID of the last entry of a stream that the group
// handed out.
func (c *Consumer) lastDelivered(ctx context.Context, stream string) (string, error) {
	groups, err := c.store.rdb.XInfoGroups(ctx, c.store.StreamKey(stream)).Result()
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		if g.Name == c.cfg.Group {
			return g.LastDeliveredID, nil
		}
	}
	return "", fmt.Errorf("group %s of %s is gone", c.cfg.Group, stream)
}
