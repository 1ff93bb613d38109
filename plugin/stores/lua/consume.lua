-- KEYS: user hash[, ip counter]. ARGV: step, free, lock ms, max lock ms, generation the code was
-- checked under[, the IP's max failures (with the ip key)].
-- The last accepted step only grows (RFC 6238 5.2): of N racing requests with one code, one wins,
-- whichever session they come from. A step is never consumed twice.
-- With the IP's counter: nothing is consumed while the IP is over its budget ({ 6, ms }).
-- A secret revoked, or replaced, since the code was checked (the generation moved): nothing is
-- consumed nor charged ({ 7 }); the caller checks the code again against what is there now.
local refused = ip_refused(KEYS[2], ARGV[6])
if refused > 0 then return { 6, refused } end
local now = now_ms()
local left = lock_left(KEYS[1], now)
if left > 0 then return { 0, left } end
if redis.call('HEXISTS', KEYS[1], 's') == 0 then return { 5 } end
local gen = tonumber(redis.call('HGET', KEYS[1], 'g') or '0')
if gen ~= tonumber(ARGV[5]) then return { 7 } end
if tonumber(ARGV[1]) <= tonumber(redis.call('HGET', KEYS[1], 'l') or '-1') then
  return charge(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), now)
end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
-- c: the consuming session's token, kept by earlier versions
redis.call('HDEL', KEYS[1], 'f', 'k', 'c')
return { 1, gen }
