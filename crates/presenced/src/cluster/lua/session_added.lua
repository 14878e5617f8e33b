-- session_added: a fresh session of the user attached (live, online).
-- A user with no session comes online in a new epoch; a session that
-- exists already changes nothing (result `exists`).

local u = user_get()
if session_get() then
  return reply('exists', '', u)
end
session_put({ owner = TOKEN, live = 1, away = 0, dropped = 0 })
local change
if u.c == 0 then
  -- A new epoch, later than every earlier one even if Redis lost them:
  -- epochs are at least Redis's clock in microseconds.
  u.ep = math.max(u.ep + 1, NOW_US)
  u.n = 0
  u.c, u.l, u.a = 1, 1, 0
  u.st, u.si, u.ll = 'online', NOW, NOW
  change = 'online'
else
  u.c, u.l = u.c + 1, u.l + 1
  change = recompute(u)
end
announce(u, change, '', last_seen(u))
user_put(u)
return reply('ok', change, u)
