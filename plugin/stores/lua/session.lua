-- A session of RedisSessionStore read along with its user's gate state (standalone Redis only:
-- the user's keys are named in the stored value, not in KEYS, so they may live in any slot).
-- KEYS: the session key.
-- A value written for fastify-totp starts with a header line:
--   '!' mode '\t' user hash '\t' tenant settings '\t' pending setup '\n' then the session's JSON;
-- mode 'c': an enrolled user's session not verified yet, also read what checking a code needs;
-- mode 'g': any other, the gate's five fields (read.lua's read_gate, inlined: this runs on
-- every request, and each call, closure and table here costs the whole app's Redis CPU);
-- lib.lua, read.lua and session-check.lua (mode 'c') come after this file, so that mode 'g'
-- returns before their functions are even defined.
-- Returns nil (no session), { value } (no header), or one string: the fields joined by tabs,
-- '\n', then the value as stored (one string, not a table: this runs on every request). The
-- caller splits the header line off the value: the line matched here, naming the keys read.
-- The fields: the gate's five (enabled 1/0, enforced, generation, locked until, enforce all),
-- then in mode 'c' read_check's four (sealed secret, sealed pending, last step, lock left ms).
local v = redis.call('GET', KEYS[1])
if not v then return false end
local mode, user, settings, pending = string.match(v, '^!([cg])\t([^\t\n]+)\t([^\t\n]+)\t([^\t\n]+)\n')
if not mode then return { v } end
if mode == 'g' then
  local r = redis.call('HMGET', user, 's', 'e', 'g', 'k')
  local a = redis.call('HGET', settings, 'a')
  return (r[1] and '1' or '0') .. '\t' .. (r[2] or '0') .. '\t' .. (r[3] or '0') .. '\t' .. (r[4] or '0') .. '\t' .. (a or '0') .. '\n' .. v
end
