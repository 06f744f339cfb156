-- Deliver a frame to a hub's inbox list, only while that hub is alive.
-- KEYS[1] inbox list   KEYS[2] the hub's liveness key   ARGV[1] frame   ARGV[2] ttl ms
-- Returns 1 when delivered, 0 when the hub is gone.
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
