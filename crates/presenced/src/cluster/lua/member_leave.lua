-- member_leave: the session leaves the channel; the member leaves with its
-- last session. ARGV[7] = the reason (left, timeout, logout, kicked). A
-- session that has not entered gets result not_member.

local user = redis.call('HGET', SS, SESSION)
if not user then
  return reply('not_member', '', 0, 0, nil)
end
redis.call('HDEL', SS, SESSION)
local m = member_get(user)
m.conns = m.conns - 1
if m.conns > 0 then
  member_put(user, m)
  local seq = announce(user, '', m, '')
  return reply('ok', '', 1, seq, user, m)
end
redis.call('HDEL', M, user)
-- As the member was with its one last connection.
local old = { conns = 1, since = m.since, data = m.data }
local seq = announce(user, 'left', nil, ARGV[7])
return reply('ok', 'left', 1, seq, user, nil, old)
