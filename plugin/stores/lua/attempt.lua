-- Decides a checked code, atomically (RFC 6238 5.2, RFC 4226 7.3).
-- KEYS: user hash, pending setup[, the IP's failure counter: on standalone Redis, when an IP
-- budget applies; on a cluster it lives in another slot and ip.lua checks and charges it].
-- ARGV: kind ('verify' or 'confirm'), the generation the code was checked under, the matched
-- step (-1: the code matched none), the sealed pending secret checked ('confirm'), free
-- failures, first lock ms, longest lock ms, the IP's window ms, the IP's max failures.
-- Refusals come first and charge nothing: a locked user, an IP over its budget, a secret
-- revoked or replaced since the read. Then a matched step newer than the last one is consumed
-- (it only grows: of N racing requests with one code exactly one wins); anything else is
-- charged, to the user and the IP.
-- Returns { 'ok', generation } | { 'locked', ms } | { 'ip-locked', ms } | { 'changed' } |
-- { 'not-enabled' } | { 'already-enabled' } | { 'no-pending' } |
-- { 'failed', failures in a row, lock ms set (0), ms the IP is now refused for (0) }.
local user, ip = KEYS[1], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local u = redis.call('HMGET', user, 'k', 'g', 's', 'l')
local locked = tonumber(u[1] or '0')
if locked > now then return { 'locked', locked - now } end
if ip and tonumber(redis.call('GET', ip) or '0') >= tonumber(ARGV[9]) then
  return { 'ip-locked', math.max(1, redis.call('PTTL', ip)) }
end
if tonumber(u[2] or '0') ~= tonumber(ARGV[2]) then return { 'changed' } end
local confirm = ARGV[1] == 'confirm'
if confirm then
  if u[3] then return { 'already-enabled' } end
  if redis.call('HGET', KEYS[2], 's') ~= ARGV[4] then return { 'no-pending' } end
elseif not u[3] then
  return { 'not-enabled' }
end
local step = tonumber(ARGV[3])
if step < 0 or step <= tonumber(u[4] or '-1') then
  local f = redis.call('HINCRBY', user, 'f', 1)
  local free, lock = tonumber(ARGV[5]), 0
  if f >= free then
    lock = math.min(tonumber(ARGV[6]) * (2 ^ math.min(f - free, 40)), tonumber(ARGV[7]))
    redis.call('HSET', user, 'k', string.format('%.0f', now + lock))
  end
  local ipLock = 0
  if ip then
    local c = redis.call('INCR', ip)
    if c == 1 then redis.call('PEXPIRE', ip, ARGV[8]) end
    if c >= tonumber(ARGV[9]) then ipLock = redis.call('PTTL', ip) end
  end
  return { 'failed', f, lock, ipLock }
end
redis.call('HDEL', user, 'f', 'k')
if not confirm then
  redis.call('HSET', user, 'l', step)
  return { 'ok', tonumber(u[2] or '0') }
end
-- the confirming code counts as used (S3); `keyId.body` in two fields, so that the body of a
-- 20-byte secret (64 characters) keeps the hash a listpack
local dot = string.find(ARGV[4], '.', 1, true)
if dot then
  redis.call('HSET', user, 's', string.sub(ARGV[4], dot + 1), 'v', string.sub(ARGV[4], 1, dot - 1), 'l', step)
else
  redis.call('HSET', user, 's', ARGV[4], 'l', step)
end
redis.call('DEL', KEYS[2])
return { 'ok', redis.call('HINCRBY', user, 'g', 1) }
