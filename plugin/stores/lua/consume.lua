-- KEYS: user hash. ARGV: step, free, lock ms, max lock ms.
-- The last accepted step only grows (RFC 6238 5.2): of N racing requests with one code, one wins.
local now = now_ms()
local left = lock_left(KEYS[1], now)
if left > 0 then return { 0, left } end
if redis.call('HEXISTS', KEYS[1], 's') == 0 then return { 5 } end
local step = tonumber(ARGV[1])
if step <= tonumber(redis.call('HGET', KEYS[1], 'l') or '-1') then
  return charge(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), now)
end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
redis.call('HDEL', KEYS[1], 'f', 'k')
return { 1, tonumber(redis.call('HGET', KEYS[1], 'g') or '0') }
