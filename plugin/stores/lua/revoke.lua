-- Deletes secret, pending setup, recovery codes, trusted devices, replay and lock state at once;
-- bumping the generation ends every session verified under the old secret.
-- KEYS: user hash, pending setup, recovery codes, trusted devices. Returns 1 when a secret or a
-- setup existed, else 0.
local had = redis.call('HEXISTS', KEYS[1], 's') + redis.call('EXISTS', KEYS[2])
redis.call('HDEL', KEYS[1], 's', 'v', 'l', 'f', 'k', 'c')
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HINCRBY', KEYS[1], 'g', 1)
return math.min(had, 1)
