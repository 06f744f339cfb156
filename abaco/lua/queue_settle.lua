-- Acknowledge (and delete) or renew a delivery, only if this consumer still owns it.
-- KEYS[1] stream   ARGV[1] group   ARGV[2] consumer   ARGV[3] entry id   ARGV[4] "ack" | "renew"
-- Returns 1 when done, 0 when the entry is no longer pending (acknowledged already),
-- -1 when another consumer owns it now (it was reclaimed: this consumer lost it).
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not pending[1] then return 0 end
if pending[1][2] ~= ARGV[2] then return -1 end
if ARGV[4] == 'ack' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
else
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
end
return 1
