-- Take one message from a queue stream without blocking, for one consumer of its group.
-- KEYS[1] stream   ARGV[1] group   ARGV[2] consumer   ARGV[3] min idle ms for reclaiming
-- Order: (1) an entry already delivered to this consumer but never acknowledged (its
-- reply was lost, e.g. a cancelled read); (2) an entry another consumer took and left
-- idle past ARGV[3] (that consumer is dead, or stopped renewing it); (3) a new entry.
-- Returns {id, field/value list} or false.
local function first(reply)
  if reply and reply[1] and reply[1][2] and reply[1][2][1] then return reply[1][2][1] end
  return nil
end
local mine = first(redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                              'STREAMS', KEYS[1], '0'))
if mine and mine[2] then return mine end
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', 1)
if claimed[2][1] then return claimed[2][1] end
local fresh = first(redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                               'STREAMS', KEYS[1], '>'))
if fresh then return fresh end
return false
