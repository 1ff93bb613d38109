-- The IP's failure budget across users, on a Redis Cluster (where it lives in another slot
-- than the user's keys; on standalone Redis attempt.lua reads and charges it itself).
-- KEYS: the IP's failure counter. ARGV: 'check' or 'charge', window ms, max failures.
-- Returns the ms the IP is refused for (after this failure, for 'charge'), or 0.
local c
if ARGV[1] == 'charge' then
  c = redis.call('INCR', KEYS[1])
  if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
else
  c = tonumber(redis.call('GET', KEYS[1]) or '0')
end
if c >= tonumber(ARGV[3]) then return math.max(1, redis.call('PTTL', KEYS[1])) end
return 0
