-- Mark an execution's log complete, and let it expire (even a log that got no output).
-- KEYS[1] log stream   KEYS[2] log meta hash   ARGV[1] ttl in ms
-- Returns the id of the end entry.
local id = redis.call('XADD', KEYS[1], '*', 'end', '')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return id
