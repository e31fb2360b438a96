local function after(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
if p[1] > 0 and not after(p[2], ARGV[2]) then return 0 end
local cp = redis.call('HGET', KEYS[2], ARGV[1])
if cp and not after(ARGV[2], cp) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
