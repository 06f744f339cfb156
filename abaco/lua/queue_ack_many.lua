-- Acknowledge (and delete) many deliveries of one consumer at once, each only if it still
-- holds it.
-- KEYS[1] stream   ARGV[1] group   ARGV[2] consumer   ARGV[3..] entry ids
-- Returns, per id: 1 acknowledged, 0 not pending any more, -1 another consumer holds it.
local out = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if not pending[1] then
    out[#out + 1] = 0
  elseif pending[1][2] ~= ARGV[2] then
    out[#out + 1] = -1
  else
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    out[#out + 1] = 1
  end
end
return out
