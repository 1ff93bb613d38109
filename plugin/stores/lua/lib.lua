-- Shared by the scripts below (prepended at load time).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function lock_left(key, now)
  local k = tonumber(redis.call('HGET', key, 'k') or '0')
  if k > now then return k - now end
  return 0
end
-- RFC 4226 7.3: count the failure; from the free-th failure on, lock for base * 2^n, capped.
local function charge(key, free, base, max, now)
  local f = redis.call('HINCRBY', key, 'f', 1)
  local lock = 0
  if f >= free then
    lock = base * (2 ^ math.min(f - free, 40))
    if lock > max then lock = max end
    redis.call('HSET', key, 'k', string.format('%.0f', now + lock))
  end
  return { 2, f, lock }
end
-- The IP's budget: ms it is still refused for, or 0.
local function ip_left(key, max)
  if tonumber(redis.call('GET', key) or '0') >= tonumber(max) then return redis.call('PTTL', key) end
  return 0
end
-- A deciding script's optional IP counter: ms it is refused for (nothing decided then), or 0.
local function ip_refused(key, max)
  if not key then return 0 end
  return ip_left(key, max)
end
-- Charges a failure to an IP: ms refused for when its budget is now spent, or 0.
local function ip_charge(key, window, max)
  local c = redis.call('INCR', key)
  if c == 1 then redis.call('PEXPIRE', key, window) end
  if c >= tonumber(max) then return redis.call('PTTL', key) end
  return 0
end
