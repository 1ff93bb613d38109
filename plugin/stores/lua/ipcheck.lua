-- KEYS: ip counter. ARGV: max failures. Returns ms refused for, or 0.
return ip_left(KEYS[1], ARGV[1])
