-- Answer a request and acknowledge it, in one round trip (both on the same server).
-- KEYS[1] requester's inbox list   KEYS[2] requester's liveness key   KEYS[3] request stream
-- ARGV[1] reply frame   ARGV[2] inbox ttl ms   ARGV[3] group   ARGV[4] consumer   ARGV[5] entry id
-- Returns {delivered (1 or 0: the requester is gone), acknowledged (1, 0 already, -1 lost)}.
local acknowledged = 0
local pending = redis.call('XPENDING', KEYS[3], ARGV[3], ARGV[5], ARGV[5], 1)
if pending[1] then
  if pending[1][2] ~= ARGV[4] then
    acknowledged = -1
  else
    redis.call('XACK', KEYS[3], ARGV[3], ARGV[5])
    redis.call('XDEL', KEYS[3], ARGV[5])
    acknowledged = 1
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {0, acknowledged} end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, acknowledged}
