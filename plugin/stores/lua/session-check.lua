-- The rest of session.lua (after lib.lua and read.lua): mode 'c', the gate's fields and what
-- checking a code needs.
local r = read_check(user, settings, pending, now_ms())
return table.concat(r, '\t') .. '\n' .. v
