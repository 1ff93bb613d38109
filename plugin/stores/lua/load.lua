-- KEYS: user hash, pending setup. Returns sealed secret, sealed pending, last step, lock left (ms), gen, consumer.
local now = now_ms()
local r = redis.call('HMGET', KEYS[1], 's', 'l', 'g', 'c', 'v')
local p = redis.call('GET', KEYS[2])
return { r[1] and (r[5] and (r[5] .. '.' .. r[1]) or r[1]) or '', p or '', tonumber(r[2] or '-1'), lock_left(KEYS[1], now), tonumber(r[3] or '0'), r[4] or '' }
