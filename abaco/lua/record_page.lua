-- One page of records from an index, in id order, with the hashes in the same reply.
-- KEYS[1] index   ARGV[1] lower bound in ZRANGEBYLEX form   ARGV[2] page size
-- ARGV[3] prefix of record keys (the record key is ARGV[3] .. id)
-- Returns {examined, last examined id or false, id1, hash1, id2, hash2, ...}. Ids whose record has expired are
-- dropped from the index on the way, so an expiring store cleans itself as it is read.
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {#ids, ids[#ids] or false}
for _, id in ipairs(ids) do
  local h = redis.call('HGETALL', ARGV[3] .. id)
  if #h == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    out[#out + 1] = id
    out[#out + 1] = h
  end
end
return out
