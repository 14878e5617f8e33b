-- session_status: the session set its own status. ARGV[7] = 1 away,
-- 0 online. The user is away when every session is away.

local u = user_get()
local s = session_get()
if not s then
  return reply('no_session', '', u)
end
if s.owner ~= TOKEN then
  return not_owner()
end
local away = tonumber(ARGV[7])
u.a = u.a - s.away + away
s.away = away
session_put(s)
local change = recompute(u)
announce(u, change, '', last_seen(u))
user_put(u)
return reply('ok', change, u)
