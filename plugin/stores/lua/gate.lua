-- The gate's read: one command per gated request.
-- KEYS: user hash, tenant settings (the copy in the user's slot).
-- Returns: enabled (1/0), enforced (1/0), generation, locked until (epoch ms, 0), enforce all (1/0).
local u = redis.call('HMGET', KEYS[1], 's', 'e', 'g', 'k')
local a = redis.call('HGET', KEYS[2], 'a')
return { u[1] and 1 or 0, tonumber(u[2] or '0'), tonumber(u[3] or '0'), tonumber(u[4] or '0'), tonumber(a or '0') }
