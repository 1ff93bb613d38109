-- Starts (or restarts) a pending setup, refused while a secret is active.
-- KEYS: user hash, pending setup. ARGV: sealed pending secret, ttl ms.
-- Returns 'ok' or 'already-enabled'.
if redis.call('HEXISTS', KEYS[1], 's') == 1 then return 'already-enabled' end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 'ok'
