-- Delete a record, take it out of its indexes, and delete its companion keys.
-- KEYS[1] record hash   KEYS[2] index of every id   KEYS[3..] companions (e.g. a worker's
-- control stream), deleted whether or not the record existed
-- ARGV[1] id   ARGV[2], ARGV[3] the parent's index key is ARGV[2] .. parent .. ARGV[3]
-- Returns 1 when the record existed, else 0.
local parent = redis.call('HGET', KEYS[1], '_parent')
redis.call('ZREM', KEYS[2], ARGV[1])
if parent and parent ~= '' then
  redis.call('ZREM', ARGV[2] .. parent .. ARGV[3], ARGV[1])
end
for i = 3, #KEYS do
  redis.call('DEL', KEYS[i])
end
return redis.call('DEL', KEYS[1])
