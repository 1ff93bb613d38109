-- The gate of the routes that check a code (/verify, /setup/confirm): the gate's answer, the
-- sealed secrets, replay and lock state and (standalone Redis) the IP's budget, in one command.
-- KEYS: user hash, tenant settings (copy in the user's slot), pending setup[, ip counter].
-- ARGV: the IP's max failures (with the ip key).
-- Returns: enabled, enforced, gen, locked until, enforce all (as gate.lua), then sealed secret,
-- sealed pending, last step, lock left (ms), consumer, IP refused for (ms; -1 when not read).
local r = redis.call('HMGET', KEYS[1], 's', 'e', 'g', 'k', 'l', 'c', 'v')
local a = redis.call('HGET', KEYS[2], 'a')
local p = redis.call('GET', KEYS[3])
local k = tonumber(r[4] or '0')
local left = k - now_ms()
if left < 0 then left = 0 end
local ip = -1
if KEYS[4] then ip = ip_left(KEYS[4], ARGV[1]) end
local sealed = ''
if r[1] then sealed = r[7] and (r[7] .. '.' .. r[1]) or r[1] end
return { r[1] and 1 or 0, tonumber(r[2] or '0'), tonumber(r[3] or '0'), k, tonumber(a or '0'),
  sealed, p or '', tonumber(r[5] or '-1'), left, r[6] or '', ip }
