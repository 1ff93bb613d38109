-- KEYS: user hash, pending setup. Deletes secret, pending setup, replay and lock state at once;
-- bumping the generation ends every session verified under the old secret.
local had = redis.call('HEXISTS', KEYS[1], 's') + redis.call('EXISTS', KEYS[2])
redis.call('HDEL', KEYS[1], 's', 'v', 'l', 'c', 'f', 'k')
redis.call('DEL', KEYS[2])
redis.call('HINCRBY', KEYS[1], 'g', 1)
return had
