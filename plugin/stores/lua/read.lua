-- What the gate reads (prepended to gate.lua, check.lua and session.lua).
-- The gate's five fields: enabled, enforced, gen, locked until, enforce all.
local function read_gate(user, settings)
  local r = redis.call('HMGET', user, 's', 'e', 'g', 'k')
  local a = redis.call('HGET', settings, 'a')
  return { r[1] and 1 or 0, tonumber(r[2] or '0'), tonumber(r[3] or '0'), tonumber(r[4] or '0'), tonumber(a or '0') }
end
-- The gate's five fields, then what checking a code needs: sealed secret, sealed pending,
-- last step, lock left (ms).
local function read_check(user, settings, pending, now)
  local r = redis.call('HMGET', user, 's', 'e', 'g', 'k', 'l', 'v')
  local a = redis.call('HGET', settings, 'a')
  local p = redis.call('GET', pending)
  local k = tonumber(r[4] or '0')
  local left = k - now
  if left < 0 then left = 0 end
  local sealed = ''
  if r[1] then sealed = r[6] and (r[6] .. '.' .. r[1]) or r[1] end
  return { r[1] and 1 or 0, tonumber(r[2] or '0'), tonumber(r[3] or '0'), k, tonumber(a or '0'),
    sealed, p or '', tonumber(r[5] or '-1'), left }
end
