-- Starts a pending setup, or answers the one pending; refused while a secret is active and
-- when the user started too many in the window.
-- KEYS: user hash, pending setup (hash: s sealed secret, q QR code, x expires at ms).
-- ARGV: sealed secret ('' only looks), QR code, ttl ms, max starts, window ms.
-- Returns { 'already-enabled' } | { 'pending', sealed, qr, expires at } | { 'throttled', ms } |
-- { 'none' } (a look: nothing pending, a start allowed) | { 'started', expires at }.
if redis.call('HEXISTS', KEYS[1], 's') == 1 then return { 'already-enabled' } end
local p = redis.call('HMGET', KEYS[2], 's', 'q', 'x')
if p[1] then return { 'pending', p[1], p[2] or '', tonumber(p[3] or '0') } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = redis.call('HMGET', KEYS[1], 'sw', 'sc')
local since, starts = tonumber(w[1] or '0'), tonumber(w[2] or '0')
if now - since >= tonumber(ARGV[5]) then since, starts = now, 0 end
if starts >= tonumber(ARGV[4]) then return { 'throttled', since + tonumber(ARGV[5]) - now } end
if ARGV[1] == '' then return { 'none' } end
local expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], 's', ARGV[1], 'q', ARGV[2], 'x', string.format('%.0f', expires))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'sw', string.format('%.0f', since), 'sc', starts + 1)
return { 'started', expires }
