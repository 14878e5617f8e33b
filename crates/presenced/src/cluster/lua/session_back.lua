-- session_back: a session got a socket again (resume), on this node or on
-- another one: the session moves to the caller. The user's status does not
-- change. Extra reply fields: was_live (the session had a socket: it is
-- replaced), moved (it belonged to another node), away (its own status).

local u = user_get()
local s = session_get()
if not s then
  return reply('no_session', '', u, 0, 0, 0)
end
local was_live = s.live
local moved = 0
if s.owner ~= TOKEN then
  moved = 1
end
if s.live == 0 then
  u.l = u.l + 1
  user_put(u)
end
s.owner, s.live, s.dropped = TOKEN, 1, 0
session_put(s)
return reply('ok', '', u, was_live, moved, s.away)
