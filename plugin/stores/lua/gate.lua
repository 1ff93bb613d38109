-- KEYS: user hash, tenant settings (a copy in the user's slot). One command per gated request.
return read_gate(KEYS[1], KEYS[2])
