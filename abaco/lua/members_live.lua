-- The live members of a duplex group; members whose lease ran out are removed, and a
-- "left" event is published once for each (only the caller that removes it publishes).
-- KEYS[1] members zset (member -> lease deadline, ms)   KEYS[2] events stream
-- ARGV[1] now in ms   ARGV[2] events stream max length
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, member in ipairs(expired) do
  if redis.call('ZREM', KEYS[1], member) == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 't', 'left', 'm', member)
  end
end
return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
