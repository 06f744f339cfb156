-- Move a record to a new status, with other fields, if its current status may move there.
-- KEYS[1] record hash
-- ARGV[1] n, then n statuses (JSON text) the move is allowed from, then field, value pairs
-- Returns the whole hash after the move; false when there is no record; the current
-- status (JSON text) when the move is not allowed from it.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local current = redis.call('HGET', KEYS[1], 'status')
local n = tonumber(ARGV[1])
local allowed = false
for i = 2, n + 1 do
  if ARGV[i] == current then allowed = true break end
end
if not allowed then return current end
redis.call('HSET', KEYS[1], unpack(ARGV, n + 2))
redis.call('HINCRBY', KEYS[1], '_rev', 1)
return redis.call('HGETALL', KEYS[1])
