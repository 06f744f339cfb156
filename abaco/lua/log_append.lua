-- Append a chunk to an execution's log, keeping at most max_bytes (the tail), with expiry.
-- KEYS[1] log stream   KEYS[2] log meta hash (size, dropped)
-- ARGV[1] chunk   ARGV[2] max bytes   ARGV[3] ttl in ms
-- Returns the id of the new entry.
local id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[1])
local size = redis.call('HINCRBY', KEYS[2], 'size', #ARGV[1])
local limit = tonumber(ARGV[2])
while size > limit and redis.call('XLEN', KEYS[1]) > 1 do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  local len = #oldest[2][2]
  redis.call('XDEL', KEYS[1], oldest[1])
  size = redis.call('HINCRBY', KEYS[2], 'size', -len)
  redis.call('HINCRBY', KEYS[2], 'dropped', len)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return id
