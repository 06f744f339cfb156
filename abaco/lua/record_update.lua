-- Set some fields of an existing record and bump its revision, atomically.
-- KEYS[1] record hash   ARGV field, value pairs
-- Returns the whole hash after the update, or false when the record does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('HINCRBY', KEYS[1], '_rev', 1)
return redis.call('HGETALL', KEYS[1])
