-- The whole hashes at several keys in one round trip. Reads only.
-- KEYS[1..] hash keys. Returns one HGETALL flat list per key (empty for a missing key).
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGETALL', key)
end
return out
