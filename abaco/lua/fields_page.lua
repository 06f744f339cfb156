-- One page of ids from an index, with chosen fields of the hash each id names, as JSON text.
-- KEYS[1] index   ARGV[1] lower bound in ZRANGEBYLEX form   ARGV[2] page size
-- ARGV[3] prefix of hash keys (the key is ARGV[3] .. id)
-- ARGV[4] "json" (the values are JSON text, as in record hashes) or "raw" (plain strings)
-- ARGV[5..] fields (none: the whole hash)
-- Returns {examined, last examined id or false, '[{"_id": ID, field: value, ...}, ...]'}:
-- one JSON text for the page, which the client decodes in one call (parsing thousands of
-- nested replies costs the client far more). Fields whose names start with "_" count for
-- finding the record but are not shown; an id whose hash has none of the fields (or does
-- not exist) is left out. Unlike record_page it changes nothing, so a search never writes.
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local raw = ARGV[4] == 'raw'
local fields, names = {}, {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
  names[#names + 1] = cjson.encode(ARGV[i])
end

local function value(text)
  if raw then
    return cjson.encode(text)
  end
  return text
end

local records = {}
for _, id in ipairs(ids) do
  local parts = {'{"_id":' .. cjson.encode(id)}
  local found = false
  if #fields == 0 then
    local flat = redis.call('HGETALL', ARGV[3] .. id)
    found = #flat > 0
    for i = 1, #flat, 2 do
      if string.sub(flat[i], 1, 1) ~= '_' then
        parts[#parts + 1] = cjson.encode(flat[i]) .. ':' .. value(flat[i + 1])
      end
    end
  else
    local values = redis.call('HMGET', ARGV[3] .. id, unpack(fields))
    for i = 1, #fields do
      if values[i] then
        found = true
        if string.sub(fields[i], 1, 1) ~= '_' then
          parts[#parts + 1] = names[i] .. ':' .. value(values[i])
        end
      end
    end
  end
  if found then
    records[#records + 1] = table.concat(parts, ',') .. '}'
  end
end
return {#ids, ids[#ids] or false, '[' .. table.concat(records, ',') .. ']'}
