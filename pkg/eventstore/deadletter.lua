-- Moves an entry to the dead-letter stream and acks it, only if the
-- consumer still owns it: another consumer may have claimed it since the
-- first decided to move it, and it is then that one's to move.
-- KEYS: the stream, its dead-letter stream (one hash slot).
-- ARGV: group, consumer, entry ID, then the dead letter's fields and values.
-- Answers 1 when it moved the entry, 0 when the consumer does not own it.
local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #owned == 0 then
  return 0
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
