-- KEYS: user hash. ARGV: free, lock ms, max lock ms.
local now = now_ms()
local left = lock_left(KEYS[1], now)
if left > 0 then return { 0, left } end
return charge(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), now)
