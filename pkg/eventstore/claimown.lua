local owned = {}
for i = 4, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) > 0 then
    owned[#owned + 1] = ARGV[i]
  end
end
if #owned == 0 then return {} end
if ARGV[3] == 'JUSTID' then owned[#owned + 1] = 'JUSTID' end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(owned))
