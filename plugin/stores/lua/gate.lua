-- The gate's read: one command per gated request; on the code routes (/verify,
-- /setup/confirm, /recover) it also answers what the code check needs.
-- KEYS: user hash, tenant settings (the copy in the user's slot), pending setup, trusted devices.
-- ARGV: mode ('gate': a request of the user; 'look': an operator's read; 'check': a code
-- route's; 'peek': a code check's read outside a request of the user, writing nothing), the
-- trusted device id the request names ('' none), then the user's roles.
-- An enforced user (per user, tenant-wide, or by a role in the tenant's `enforceRoles`) without
-- an active secret, in a tenant with a grace period, is marked seen on the first request that
-- sees it ('gate' and 'check' only); its deadline is that time + the grace period set now.
-- Returns: enabled (1/0), enforced (1/0), generation, locked until (epoch ms, 0), enforce all
-- (1/0), enforced by a role (1/0), setup deadline (epoch ms, 0), the device's record ('' none);
-- 'check' adds the sealed secret ('' none), the sealed pending secret ('' none), the last step (-1).
local u = redis.call('HMGET', KEYS[1], 's', 'e', 'g', 'k', 'd', 'v', 'l')
local t = redis.call('HMGET', KEYS[2], 'a', 'r', 'p')
local byRole = 0
if t[2] then
  for i = 3, #ARGV do
    if string.find(t[2], '\n' .. ARGV[i] .. '\n', 1, true) then byRole = 1 break end
  end
end
-- 'd' is when the gate first saw the user enforced: the deadline follows the grace period set now
local seen = tonumber(u[5] or '0')
local grace = tonumber(t[3] or '0')
local mode = ARGV[1]
if (mode == 'gate' or mode == 'check') and not u[1] and seen == 0 and grace > 0 and (u[2] or t[1] or byRole == 1) then
  local now = redis.call('TIME')
  seen = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('HSET', KEYS[1], 'd', string.format('%.0f', seen))
end
local deadline = 0
if seen > 0 and grace > 0 then deadline = seen + grace * 1000 end
local device = ''
if ARGV[2] ~= '' then device = redis.call('HGET', KEYS[4], ARGV[2]) or '' end
local r = { u[1] and 1 or 0, tonumber(u[2] or '0'), tonumber(u[3] or '0'), tonumber(u[4] or '0'),
  tonumber(t[1] or '0'), byRole, deadline, device }
if mode == 'check' or mode == 'peek' then
  local sealed = ''
  if u[1] then sealed = u[6] and (u[6] .. '.' .. u[1]) or u[1] end
  r[9] = sealed
  r[10] = redis.call('HGET', KEYS[3], 's') or ''
  r[11] = tonumber(u[7] or '-1')
end
return r
