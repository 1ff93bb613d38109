-- KEYS: user hash. ARGV: free, lock ms, max lock ms[, generation the code was checked under].
-- A secret revoked or replaced since the code was checked: nobody is charged ({ 7 }).
if ARGV[4] and tonumber(redis.call('HGET', KEYS[1], 'g') or '0') ~= tonumber(ARGV[4]) then return { 7 } end
local now = now_ms()
local left = lock_left(KEYS[1], now)
if left > 0 then return { 0, left } end
return charge(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), now)
