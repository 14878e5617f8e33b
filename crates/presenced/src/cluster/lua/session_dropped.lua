-- session_dropped: the session's socket went away; its grace window
-- starts. The user's status does not change; with its last live session
-- gone, the user's last live time is now. A session already dropped
-- changes nothing.

local u = user_get()
local s = session_get()
if not s then
  return reply('no_session', '', u)
end
if s.owner ~= TOKEN then
  return not_owner()
end
if s.live == 1 then
  s.live, s.dropped = 0, NOW
  session_put(s)
  u.l = u.l - 1
  if u.l == 0 then
    u.ll = NOW
  end
  user_put(u)
end
return reply('ok', '', u)
