-- A session of RedisSessionStore read along with its user's gate state (standalone Redis only:
-- the user's keys are named in the stored value, not in KEYS, so they may live in any slot).
-- KEYS: the session key.
-- A value written for fastify-totp starts with a header line:
--   '!' mode '\t' user hash '\t' tenant settings '\t' pending setup '\n' then the session's JSON;
-- mode 'c': an enrolled user's session not verified yet, also read what checking a code needs;
-- mode 'g': any other, the gate's five fields.
-- Returns nil (no session), { value } (no header), or { value, user hash, fields... }; the value
-- comes back whole (the caller skips the header).
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.byte(v, 1) ~= 33 then return { v } end
local a = string.find(v, '\t', 3, true)
local b = a and string.find(v, '\t', a + 1, true)
local c = b and string.find(v, '\t', b + 1, true)
local nl = c and string.find(v, '\n', c + 1, true)
if not nl then return { v } end
local user = string.sub(v, a + 1, b - 1)
local settings = string.sub(v, b + 1, c - 1)
local r
if string.byte(v, 2) == 103 then -- 'g'
  r = read_gate(user, settings)
else
  r = read_check(user, settings, string.sub(v, c + 1, nl - 1), now_ms())
end
local out = { v, user }
for i = 1, #r do out[i + 2] = r[i] end
return out
