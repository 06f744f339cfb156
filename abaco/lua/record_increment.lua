-- Add to a numeric field of an existing record and bump its revision, atomically.
-- KEYS[1] record hash   ARGV[1] field   ARGV[2] amount (integer or float)
-- Returns the new value as a string, or false when the record does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HINCRBY', KEYS[1], '_rev', 1)
return tostring(redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[2]))
