-- The gate of the routes that check a code (/verify, /setup/confirm): the gate's answer, the
-- sealed secrets, replay and lock state and (standalone Redis) the IP's budget, in one command.
-- KEYS: user hash, tenant settings (copy in the user's slot), pending setup[, ip counter].
-- ARGV: the IP's max failures (with the ip key).
-- Returns read_check's nine fields, then the IP's refusal (ms; -1 when not read).
local r = read_check(KEYS[1], KEYS[2], KEYS[3], now_ms())
local ip = -1
if KEYS[4] then ip = ip_left(KEYS[4], ARGV[1]) end
r[10] = ip
return r
