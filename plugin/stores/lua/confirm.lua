-- KEYS: user hash, pending setup[, ip counter]. ARGV: sealed pending, step, free, lock ms, max lock ms[,
-- the IP's max failures (with the ip key)].
-- With the IP's counter: nothing is confirmed while the IP is over its budget ({ 6, ms }).
local refused = ip_refused(KEYS[3], ARGV[6])
if refused > 0 then return { 6, refused } end
local now = now_ms()
local left = lock_left(KEYS[1], now)
if left > 0 then return { 0, left } end
if redis.call('HEXISTS', KEYS[1], 's') == 1 then return { 3 } end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return { 4 } end
local step = tonumber(ARGV[2])
if step <= tonumber(redis.call('HGET', KEYS[1], 'l') or '-1') then
  return charge(KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), now)
end
-- the confirming code counts as used (S3)
-- `keyId.body` in two fields: a body of <= 64 bytes (20-byte secrets) keeps the hash a listpack
local dot = string.find(ARGV[1], '.', 1, true)
if dot then
  redis.call('HSET', KEYS[1], 's', string.sub(ARGV[1], dot + 1), 'v', string.sub(ARGV[1], 1, dot - 1), 'l', ARGV[2])
else
  redis.call('HSET', KEYS[1], 's', ARGV[1], 'l', ARGV[2])
  redis.call('HDEL', KEYS[1], 'v')
end
-- c: the consuming session's token, kept by earlier versions
redis.call('HDEL', KEYS[1], 'f', 'k', 'c')
redis.call('DEL', KEYS[2])
return { 1, redis.call('HINCRBY', KEYS[1], 'g', 1) }
