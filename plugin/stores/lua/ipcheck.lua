-- KEYS: ip counter. ARGV: max failures. Returns ms refused for, or 0.
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return redis.call('PTTL', KEYS[1]) end
return 0
