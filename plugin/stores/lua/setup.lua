-- KEYS: user hash, pending setup. ARGV: sealed pending secret, ttl ms.
if redis.call('HEXISTS', KEYS[1], 's') == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
