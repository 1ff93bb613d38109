-- KEYS: ip counter. ARGV: window ms, max failures. Returns ms refused for, or 0.
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if c >= tonumber(ARGV[2]) then return redis.call('PTTL', KEYS[1]) end
return 0
