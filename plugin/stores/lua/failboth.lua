-- A wrong code on standalone Redis: charges the user and the IP in one command.
-- KEYS: user hash, ip counter. ARGV: free, lock ms, max lock ms, ip window ms, ip max failures,
-- generation the code was checked under.
-- Returns the user's attempt result (as fail.lua) with the IP's refusal (ms, or 0) appended;
-- an IP already over its budget is charged no further, nor is the user: { 6, ms, 0, 0 }; a
-- secret revoked or replaced since the code was checked: nobody is charged ({ 7, 0, 0, 0 }).
local blocked = ip_left(KEYS[2], ARGV[5])
if blocked > 0 then return { 6, blocked, 0, 0 } end
if tonumber(redis.call('HGET', KEYS[1], 'g') or '0') ~= tonumber(ARGV[6]) then return { 7, 0, 0, 0 } end
local now = now_ms()
local ip = ip_charge(KEYS[2], ARGV[4], ARGV[5])
local left = lock_left(KEYS[1], now)
if left > 0 then return { 0, left, 0, ip } end
local r = charge(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), now)
return { r[1], r[2], r[3], ip }
