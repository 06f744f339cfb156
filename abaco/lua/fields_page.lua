-- One page of ids from an index, with chosen fields of the hash each id names. Reads only.
-- KEYS[1] index   ARGV[1] lower bound in ZRANGEBYLEX form   ARGV[2] page size
-- ARGV[3] prefix of hash keys (the key is ARGV[3] .. id)   ARGV[4..] fields (none: the whole hash)
-- Returns {examined, last examined id or false, id1, values1, id2, values2, ...}: values are
-- HMGET's (in the order of the fields) or HGETALL's flat list. An id whose hash holds none
-- of the fields (or does not exist) is left out. Unlike record_page it changes nothing (an
-- expired record's index entry stays for record_page to drop), so a search never writes.
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {#ids, ids[#ids] or false}
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
for _, id in ipairs(ids) do
  local values
  local found = false
  if #fields == 0 then
    values = redis.call('HGETALL', ARGV[3] .. id)
    found = #values > 0
  else
    values = redis.call('HMGET', ARGV[3] .. id, unpack(fields))
    for i = 1, #fields do
      if values[i] then
        found = true
        break
      end
    end
  end
  if found then
    out[#out + 1] = id
    out[#out + 1] = values
  end
end
return out
