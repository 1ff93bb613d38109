-- A new set of recovery codes replaces the old one, for the active secret the session verified.
-- KEYS: user hash, recovery codes. ARGV: the generation the session verified under, then the
-- keyed hashes of the new codes.
-- Returns { 'ok', codes stored } | { 'not-enabled' } | { 'changed' } (revoked or re-enrolled since).
local u = redis.call('HMGET', KEYS[1], 's', 'g')
if not u[1] then return { 'not-enabled' } end
if tonumber(u[2] or '0') ~= tonumber(ARGV[1]) then return { 'changed' } end
redis.call('DEL', KEYS[2])
if #ARGV >= 2 then redis.call('SADD', KEYS[2], unpack(ARGV, 2)) end
return { 'ok', redis.call('SCARD', KEYS[2]) }
