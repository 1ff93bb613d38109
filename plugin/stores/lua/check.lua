-- The gate's read on the routes that check a code (/verify, /setup/confirm): gate.lua's
-- fields, then what the check needs, in the same command.
-- KEYS: user hash, tenant settings (the copy in the user's slot), pending setup (hash).
-- Returns: enabled, enforced, generation, locked until, enforce all (as gate.lua), then the
-- sealed secret ('' for none), the sealed pending secret ('' for none), the last step (-1).
local u = redis.call('HMGET', KEYS[1], 's', 'e', 'g', 'k', 'v', 'l')
local a = redis.call('HGET', KEYS[2], 'a')
local sealed = ''
if u[1] then sealed = u[5] and (u[5] .. '.' .. u[1]) or u[1] end
return { u[1] and 1 or 0, tonumber(u[2] or '0'), tonumber(u[3] or '0'), tonumber(u[4] or '0'), tonumber(a or '0'),
  sealed, redis.call('HGET', KEYS[3], 's') or '', tonumber(u[6] or '-1') }
