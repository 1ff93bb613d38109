-- KEYS: user hash[, ip counter]. ARGV: step, free, lock ms, max lock ms, consumer (token of the
-- session)[, the IP's max failures (with the ip key)].
-- The last accepted step only grows (RFC 6238 5.2): of N racing requests with one code, one wins.
-- With the IP's counter: nothing is consumed while the IP is over its budget ({ 6, ms }).
local refused = ip_refused(KEYS[2], ARGV[6])
if refused > 0 then return { 6, refused } end
local now = now_ms()
local left = lock_left(KEYS[1], now)
if left > 0 then return { 0, left } end
if redis.call('HEXISTS', KEYS[1], 's') == 0 then return { 5 } end
local step = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'l') or '-1')
-- the session that consumed this step retrying (its answer was lost): done already, not a replay
if ARGV[5] ~= '' and step == last and redis.call('HGET', KEYS[1], 'c') == ARGV[5] then
  return { 1, tonumber(redis.call('HGET', KEYS[1], 'g') or '0') }
end
if step <= last then
  return charge(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), now)
end
redis.call('HSET', KEYS[1], 'l', ARGV[1], 'c', ARGV[5])
redis.call('HDEL', KEYS[1], 'f', 'k')
return { 1, tonumber(redis.call('HGET', KEYS[1], 'g') or '0') }
