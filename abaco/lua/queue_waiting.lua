-- Entries of a queue stream that no consumer has taken yet: all of them less the pending.
-- KEYS[1] the stream; ARGV[1] the consumer group.
local total = redis.call('XLEN', KEYS[1])
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
if ok then
  return total - pending[1]
end
return total
