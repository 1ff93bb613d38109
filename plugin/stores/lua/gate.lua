-- KEYS: user hash, tenant settings (a copy in the user's slot). One command per gated request.
local r = redis.call('HMGET', KEYS[1], 's', 'e', 'g', 'k')
local a = redis.call('HGET', KEYS[2], 'a')
return { r[1] and 1 or 0, tonumber(r[2] or '0'), tonumber(r[3] or '0'), tonumber(r[4] or '0'), tonumber(a or '0') }
