-- Take one message from a queue stream without blocking, for one consumer of its group.
-- KEYS[1] stream   ARGV[1] group   ARGV[2] consumer   ARGV[3] min idle ms for reclaiming
-- ARGV[4..] ids this consumer holds now (taken, not yet settled): never handed out again
-- Order: (1) an entry already delivered to this consumer, not held and never acknowledged
-- (its reply was lost, e.g. a cancelled read, or it was released); (2) an entry left idle
-- past ARGV[3] by any consumer, this one included (it died, or stopped renewing it);
-- (3) a new entry. XPENDING only lists: held entries keep their idle time, so one whose
-- holder gave up on it is still reclaimed after ARGV[3].
-- Returns {id, field/value list} or false.
local held = {}
for i = 4, #ARGV do held[ARGV[i]] = true end
local mine = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', #ARGV - 2, ARGV[2])
for _, pending in ipairs(mine) do
  if not held[pending[1]] then
    local entry = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, pending[1])
    if entry[1] and entry[1][2] then return entry[1] end
  end
end
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', 1)
if claimed[2][1] then return claimed[2][1] end
local fresh = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                         'STREAMS', KEYS[1], '>')
if fresh and fresh[1] and fresh[1][2] and fresh[1][2][1] then return fresh[1][2][1] end
return false
