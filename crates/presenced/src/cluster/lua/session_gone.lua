-- session_gone: the session ends for good (grace over, bye, kick). The
-- user goes offline with its last session: since = now, last_seen = its
-- last live time. ARGV[7] = the reason (left, timeout, logout, kicked),
-- ARGV[8] = 1 to recompute the status of a user still present, 0 to leave
-- it (a kick goes straight to offline, never through a passing away).

local u = user_get()
local s = session_get()
if not s then
  return reply('no_session', '', u)
end
if s.owner ~= TOKEN then
  return not_owner()
end
redis.call('HDEL', S, SESSION)
u.c = u.c - 1
u.a = u.a - s.away
if s.live == 1 then
  u.l = u.l - 1
  if u.l == 0 then
    u.ll = NOW
  end
end
local change = ''
local seen = last_seen(u)
if u.c == 0 then
  seen = u.ll
  u.st, u.si, u.l, u.a = 'offline', NOW, 0, 0
  change = 'offline'
elseif ARGV[8] == '1' then
  change = recompute(u)
end
announce(u, change, ARGV[7], seen)
user_put(u)
return reply('ok', change, u)
