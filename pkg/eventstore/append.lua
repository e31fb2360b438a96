-- kind is the key type a write command needs and the args of one item: DEL
-- takes its key alone, HSET pairs. An if chain, as a table of them would be
-- built again on every run.
local function kind(cmd)
  if cmd == 'HSET' then return 'hash', 2 elseif cmd == 'SADD' then return 'set', 1
  elseif cmd == 'ZADD' then return 'zset', 2 elseif cmd == 'DEL' then return 'none', 0
  elseif cmd == 'RPUSH' or cmd == 'LPUSH' then return 'list', 1
  elseif cmd == 'HDEL' then return 'hash', 1 elseif cmd == 'SREM' then return 'set', 1
  elseif cmd == 'ZREM' then return 'zset', 1 end
end

-- write reads the write at ARGV[w]: its command, key, args from ARGV[a] to
-- ARGV[a + n - 1], and where the next write begins.
local function write(w)
  local n = tonumber(ARGV[w + 2])
  return ARGV[w], KEYS[tonumber(ARGV[w + 1])], w + 3, n, w + 3 + n
end

-- types holds what each key will hold once the groups accepted so far are
-- written, heads each entity's version then; a group's own changes are kept
-- apart until it is accepted.
local types, heads = {}, {}

-- check checks the group in ARGV[from] to ARGV[last]: the versions, then
-- every key each write needs. It answers the versions the group's events
-- get, or the error that refuses it.
local function check(from, last)
  local ts, hs, versions = {}, {}, {}
  -- need checks that key will hold a want, or nothing, when the writes
  -- checked before have run, and notes what it holds after; want is 'none'
  -- for DEL, which takes a key of any type.
  local function need(key, want)
    if want ~= 'none' then
      local t = ts[key] or types[key]
      if not t then
        t = redis.call('TYPE', key).ok
        types[key] = t -- nothing is written before every group is checked
      end
      if t ~= 'none' and t ~= want then return key .. ' holds a ' .. t .. ', not a ' .. want end
    end
    ts[key] = want
  end
  local i = from
  while i <= last do
    local id, expected = ARGV[i], tonumber(ARGV[i + 1])
    -- The HGET fails the whole script unless the versions hash is one or
    -- nothing: before anything is written, so no TYPE.
    local cur = hs[id] or heads[id] or tonumber(redis.call('HGET', KEYS[2], id) or 0)
    types[KEYS[2]] = types[KEYS[2]] or 'hash'
    local bad = need(KEYS[2], 'hash')
    if bad then return nil, 'ERR append refused: ' .. bad end
    if expected >= 0 and expected ~= cur then
      return nil, string.format('CONFLICT %d %d %s', expected, cur, id)
    end
    hs[id] = cur + 1
    versions[#versions + 1] = cur + 1
    bad = need(KEYS[1], 'stream')
    if bad then return nil, 'ERR append refused: ' .. bad end
    local w = i + 8 + tonumber(ARGV[i + 7])
    i = w + 1
    for _ = 1, tonumber(ARGV[w]) do
      local cmd, key, _, n
      cmd, key, _, n, i = write(i)
      local t, item = kind(cmd)
      if not t or (item == 0 and n > 0) or (item > 0 and (n == 0 or n % item ~= 0)) then
        return nil, 'ERR append refused: ' .. cmd .. ' with ' .. n .. ' args'
      end
      bad = need(key, t)
      if bad then return nil, 'ERR append refused: ' .. bad end
    end
  end
  for k, t in pairs(ts) do types[k] = t end
  for id, v in pairs(hs) do heads[id] = v end
  return versions
end

-- apply writes the checked group in ARGV[from] on, with its versions, and
-- its marker, kept for ttl seconds; it answers the events' stream IDs and
-- versions.
local function apply(from, versions, marker, ttl)
  local out, flat, i = {}, {}, from
  for e, v in ipairs(versions) do
    local id, meta = ARGV[i], tonumber(ARGV[i + 7])
    redis.call('HSET', KEYS[2], id, v)
    local sid = redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[i + 2], 'type', ARGV[i + 3],
      'entity_type', ARGV[i + 4], 'entity_id', id, 'version', v, 'time', ARGV[i + 5],
      'entity', ARGV[i + 6], unpack(ARGV, i + 8, i + 7 + meta))
    local w = i + 8 + meta
    i = w + 1
    for _ = 1, tonumber(ARGV[w]) do
      local cmd, key, a, n
      cmd, key, a, n, i = write(i)
      redis.call(cmd, key, unpack(ARGV, a, a + n - 1))
    end
    out[e] = {sid, v}
    flat[2 * e - 1], flat[2 * e] = sid, v
  end
  redis.call('SET', marker, table.concat(flat, ' '), 'EX', ttl)
  return out
end

-- now is Redis's clock in Unix milliseconds, read once a run.
local clock
local function now()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock
end

-- Check every group, then write the accepted ones in order. A group whose
-- marker an accepted group before it has (the same append twice in one
-- run) answers what that one does; one that was written before answers
-- what it wrote, also past its deadline, which refuses only a new write.
local replies, accepted, first, twins, at = {}, {}, {}, {}, 2
for g = 1, tonumber(ARGV[1]) do
  local last, marker, by = at + tonumber(ARGV[at]), KEYS[2 + g], tonumber(ARGV[at + 2])
  local done = redis.call('GET', marker)
  if done then
    local out = {}
    for id, v in string.gmatch(done, '(%S+) (%S+)') do out[#out + 1] = {id, tonumber(v)} end
    replies[g] = out
  elseif first[marker] then
    twins[#twins + 1] = {g, first[marker]}
  elseif by > 0 and now() > by then
    replies[g] = {err = 'LATE the append reached Redis ' .. (now() - by) .. ' ms after its deadline'}
  else
    local versions, err = check(at + 3, last)
    if versions then
      accepted[#accepted + 1] = {g, at + 3, versions, ARGV[at + 1]}
      first[marker] = g
    else
      replies[g] = {err = err}
    end
  end
  at = last + 1
end
for _, a in ipairs(accepted) do replies[a[1]] = apply(a[2], a[3], KEYS[2 + a[1]], a[4]) end
for _, t in ipairs(twins) do replies[t[1]] = replies[t[2]] end
return replies
