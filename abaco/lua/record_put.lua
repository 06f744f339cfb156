-- Write a whole record hash, bump its revision, and index it.
-- KEYS[1] record hash   KEYS[2] index of every id   KEYS[3] parent's index, or the record key when none
-- ARGV[1] id   ARGV[2] mode: "replace" | "create" | "cas"   ARGV[3] expected revision (cas)
-- ARGV[4] ttl in ms, 0 for none   ARGV[5] parent id or ""   ARGV[6..] field, value pairs
-- Returns the new revision, or -1 when "create" finds it exists / "cas" finds another revision.
local current = redis.call('HGET', KEYS[1], '_rev')
local rev = current and tonumber(current) or 0
local mode = ARGV[2]
if mode == 'create' and current then return -1 end
if mode == 'cas' and rev ~= tonumber(ARGV[3]) then return -1 end
redis.call('DEL', KEYS[1])
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], '_rev', rev + 1, '_parent', ARGV[5], unpack(fields))
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[3], 0, ARGV[1]) end
return rev + 1
