// Package eventstore keeps domain events in Redis Streams, one stream per
// entity type, and delivers them to consumer groups.
//
// Read it top-down. Each Lua script is a .lua file beside the Go that runs
// it (//go:embed), where its KEYS and ARGV are documented.
//
//   - event.go: the envelope, stored as plain stream fields so that
//     `XRANGE events:{customer} - +` is readable as it is.
//   - store.go: the Store, its options and keys, and an entity's Version.
//   - append.go: Append writes one event or a batch in one Lua script,
//     append.lua, with an optional expected entity version per event and
//     extra writes (the entity cache) that happen in the same atomic step.
//     Stream IDs come from Redis. All or nothing: events no reader could
//     decode are refused in Go, and the script checks versions, key types
//     and args before its first write, as Redis does not undo a script that
//     fails halfway. A batch leaves a marker, so that a retry of it (go-redis
//     retries a script whose reply was lost) writes nothing and answers what
//     the first run did. Appends to one stream that come while two runs are
//     in flight go together in the next run, each still whole or refused on
//     its own: under load one round trip and one script carry many commits.
//     An append on a context of AppendBy is refused (ErrTooLate) if it
//     reaches Redis after its deadline, by Redis's clock.
//   - write.go: a Write, a command run with an append, and the flat
//     arguments Append sends append.lua; EncodeWrites for other scripts.
//   - conflict.go: the ConflictError of a stale expected version, and
//     ErrTooLate.
//   - replicas.go: with WithReplicas an append returns once enough
//     replicas have it: its script run is followed by WAIT on the same
//     connection, in one round trip, and an append they did not confirm in
//     time fails with ErrNotReplicated, written on the primary all the same.
//   - read.go: Read pages through a stream from any ID; Replay walks all of
//     it, with an Archive (UseArchive) first what was archived and may be
//     trimmed, then the stream, with no gap and no repeat. Entries that are
//     not events are logged and skipped.
//   - router.go: the Router that hands each event to the handler of its type
//     (On decodes its entity into a typed payload), behind Middleware such as
//     Recoverer and Logging.
//   - consumer.go: a consumer-group consumer. It creates its groups from the
//     stream's start, re-reads its own pending entries on start, acks only
//     after the handler succeeded, turns a handler's panic into a failed
//     delivery, and backs off while Redis is away. A handler's error that
//     wraps ErrSkip (Skip(err)) is final: the event is acked and counted as
//     skipped, never retried or dead-lettered, for events that can never
//     succeed.
//   - workers.go: a batch's events go to Workers workers by a hash of their
//     entity id, so that each entity's events are handled one at a time in
//     stream order while other entities' are handled beside them; with one
//     worker, the default, one event at a time (also beside Replay). The
//     workers outlive a batch: the next is read while they handle this one.
//   - ownership.go: while a consumer works through its batches, or waits to
//     retry an entry, it keeps those entries its own (XCLAIM JUSTID of the
//     ones it still owns), so that no other replica claims them as idle.
//   - retry.go: a failed entry is delivered again to its own consumer after
//     RetryDelay·2^(n-1), capped at MaxRetryDelay.
//   - recovery.go: the periodic XAUTOCLAIM of entries of consumers that are
//     gone, the removal of those consumers (told from live ones by a mark
//     each consumer keeps fresh), and the delivery count that
//     decides when an entry is dead: an entry re-read or claimed that was
//     delivered more than MaxDeliveries times is dead-lettered unhandled,
//     since it may have crashed the process each time.
//   - checkpoint.go: a batch's ack goes out with the next read, in one round
//     trip, and with it the group's checkpoint, the stream ID up to which all
//     is done; a lost group is created again from it, not from the start.
//   - catchup.go: with an archive, a group behind its stream's first
//     entry (created from the start, or from its checkpoint, after a trim)
//     is first handed the archived events in between, in order.
//   - deadletter.go: the dead-letter stream per stream and group, listed and
//     replayed.
//   - stats.go: counters and the stream and group facts an operator needs.
//
// Order: a group hands the events of one stream out in order, and one
// consumer handles the events of one entity in its batches in order, one at
// a time, whatever its Workers; its workers have at most two batches at
// once, and an event of the second waits for those of its entity in the
// first. A retry breaks that order: a failed event is handled again after
// later events of the same entity, by its own consumer after its retry
// delay, or by another replica that claims it. Replicas of a group also
// handle different batches at the same time. So two events of one entity
// may be handled in either order; handlers that care compare the event's
// entity version with the one they have seen. Events of different entities
// are handled at the same time with Workers > 1: handlers must then not
// share state across entities without a lock.
//
// Keys share the stream's hash tag ({customer}), so a script may touch the
// stream and the cache of one entity type together, also on Redis Cluster:
//
//	events:{customer}                 the stream; with an archive trimmed below what it holds (pkg/archive)
//	{customer}:versions               hash: entity id -> latest version (the entity cache's too)
//	{customer}:appended:<event id>    a batch's reply, for a minute (client retries come within seconds)
//	events:{customer}:dead:<group>    dead letters of one group
//	{customer}:checkpoints            hash: group -> stream ID it is done up to
//	{customer}:seen:<group>           sorted set: consumer -> when it was last seen (ms)
package eventstore
