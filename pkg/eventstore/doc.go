// Package eventstore keeps domain events in Redis Streams, one stream per
// entity type, and delivers them to consumer groups.
//
// Read it top-down:
//
//   - event.go: the envelope, stored as plain stream fields so that
//     `XRANGE events:{customer} - +` is readable as it is.
//   - append.go: Append writes one event or a batch in one Lua script, with an
//     optional expected entity version per event and extra writes (the entity
//     cache) that happen in the same atomic step. Stream IDs come from Redis.
//     All or nothing: events no reader could decode are refused in Go, and
//     the script checks versions, key types and args before its first write,
//     as Redis does not undo a script that fails halfway. A batch leaves a
//     marker, so that a retry of it (go-redis retries a script whose reply
//     was lost) writes nothing and answers what the first run did.
//   - read.go: Read pages through a stream from any ID; Replay walks all of
//     it. Entries that are not events are logged and skipped.
//   - router.go: the Router that hands each event to the handler of its type
//     (On decodes its entity into a typed payload), behind Middleware such as
//     Recoverer and Logging.
//   - consumer.go: a consumer-group consumer. It creates its groups from the
//     stream's start, re-reads its own pending entries on start, acks only
//     after the handler succeeded, and backs off while Redis is away.
//   - recovery.go: the periodic XAUTOCLAIM of idle entries and the delivery
//     count that decides when an entry is dead.
//   - deadletter.go: the dead-letter stream per stream and group, listed and
//     replayed.
//   - stats.go: counters and the stream and group facts an operator needs.
//
// Keys share the stream's hash tag ({customer}), so a script may touch the
// stream and the cache of one entity type together, also on Redis Cluster:
//
//	events:{customer}                 the stream, never trimmed
//	{customer}:versions               hash: entity id -> latest version
//	{customer}:appended:<event id>    a batch's reply, for ten minutes
//	events:{customer}:dead:<group>    dead letters of one group
package eventstore
