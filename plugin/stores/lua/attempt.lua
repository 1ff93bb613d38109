-- Decides a checked code, atomically (RFC 6238 5.2, RFC 4226 7.3).
-- KEYS: user hash, pending setup, recovery codes (a set of keyed hashes)[, the IP's failure
-- counter: on standalone Redis, when an IP budget applies; on a cluster it lives in another
-- slot and ip.lua checks and charges it].
-- ARGV: kind ('verify', 'confirm' or 'recover'), the generation the code was checked under,
-- the matched step (-1: the code matched none), the sealed pending secret checked ('confirm'),
-- free failures, first lock ms, longest lock ms, the IP's window ms, the IP's max failures,
-- failures in a row that lock until unlocked (0: none); then recovery hashes: 'confirm', the
-- new set; 'recover', the code's hash under each key (one may be stored).
-- Refusals come first and charge nothing: a locked user, an IP over its budget, a secret
-- revoked or replaced since the read. Then a matched step newer than the last one is consumed
-- (it only grows: of N racing requests with one code exactly one wins), or a recovery code is
-- removed (once); anything else is charged, to the user and the IP.
-- Returns { 'ok', generation, recovery codes left } | { 'locked', ms (-1: until unlocked) } |
-- { 'ip-locked', ms } | { 'changed' } | { 'not-enabled' } | { 'already-enabled' } |
-- { 'no-pending' } | { 'failed', failures in a row, lock ms set (0; -1: until unlocked),
-- ms the IP is now refused for (0) }.
local user, codes, ip = KEYS[1], KEYS[3], KEYS[4]
-- a policy it cannot read refuses (an error: 503) before anything is written
for _, i in ipairs({ 2, 3, 5, 6, 7, 8, 9, 10 }) do
  if not tonumber(ARGV[i]) then return redis.error_reply('attempt.lua: ARGV[' .. i .. '] is not a number') end
end
-- LOCKED_UNTIL_UNLOCK in types.ts: the largest time a Date holds
local UNTIL_UNLOCK = 8640000000000000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local u = redis.call('HMGET', user, 'k', 'g', 's', 'l')
local locked = tonumber(u[1] or '0')
if locked >= UNTIL_UNLOCK then return { 'locked', -1 } end
if locked > now then return { 'locked', locked - now } end
if ip and tonumber(redis.call('GET', ip) or '0') >= tonumber(ARGV[9]) then
  return { 'ip-locked', math.max(1, redis.call('PTTL', ip)) }
end
if tonumber(u[2] or '0') ~= tonumber(ARGV[2]) then return { 'changed' } end
local kind = ARGV[1]
if kind == 'confirm' then
  if u[3] then return { 'already-enabled' } end
  if redis.call('HGET', KEYS[2], 's') ~= ARGV[4] then return { 'no-pending' } end
elseif not u[3] then
  return { 'not-enabled' }
end
local step = tonumber(ARGV[3])
local right
if kind == 'recover' then
  right = false
  for i = 11, #ARGV do
    if redis.call('SREM', codes, ARGV[i]) == 1 then right = true break end
  end
else
  right = step >= 0 and step > tonumber(u[4] or '-1')
end
if not right then
  local f = redis.call('HINCRBY', user, 'f', 1)
  local free, max, lock = tonumber(ARGV[5]), tonumber(ARGV[10]), 0
  if max > 0 and f >= max then
    lock = -1
    redis.call('HSET', user, 'k', string.format('%.0f', UNTIL_UNLOCK))
  elseif f >= free then
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
if kind ~= 'confirm' then
  if kind == 'verify' then redis.call('HSET', user, 'l', step) end
  return { 'ok', tonumber(u[2] or '0'), redis.call('SCARD', codes) }
end
-- the confirming code counts as used (S3); `keyId.body` in two fields, so that the body of a
-- 20-byte secret (64 characters) keeps the hash a listpack
local dot = string.find(ARGV[4], '.', 1, true)
if dot then
  redis.call('HSET', user, 's', string.sub(ARGV[4], dot + 1), 'v', string.sub(ARGV[4], 1, dot - 1), 'l', step)
else
  redis.call('HSET', user, 's', ARGV[4], 'l', step)
end
redis.call('DEL', KEYS[2], codes)
redis.call('HDEL', user, 'd')
if #ARGV >= 11 then redis.call('SADD', codes, unpack(ARGV, 11)) end
return { 'ok', redis.call('HINCRBY', user, 'g', 1), redis.call('SCARD', codes) }
