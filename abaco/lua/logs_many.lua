-- The text of several execution logs in one round trip (see LogStore). Reads only.
-- KEYS[1..] log streams. Returns, per key, its chunks joined, or false when it holds no entry.
local out = {}
for i, key in ipairs(KEYS) do
  local entries = redis.call('XRANGE', key, '-', '+')
  if #entries == 0 then
    out[i] = false
  else
    local parts = {}
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      for j = 1, #fields, 2 do
        if fields[j] == 'd' then
          parts[#parts + 1] = fields[j + 1]
        end
      end
    end
    out[i] = table.concat(parts)
  end
end
return out
