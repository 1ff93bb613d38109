-- KEYS: ip counter. ARGV: window ms, max failures. Returns ms refused for, or 0.
return ip_charge(KEYS[1], ARGV[1], ARGV[2])
