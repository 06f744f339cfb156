-- Move a storage query from "pending" to another state, only if it is still pending.
-- KEYS[1] the query's state key   ARGV[1] new state ("taken" or "withdrawn")   ARGV[2] ttl ms
-- Returns 1 when this call moved it, 0 when someone else got there first (or it expired).
if redis.call('GET', KEYS[1]) ~= 'pending' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
