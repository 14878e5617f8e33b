-- member_update: replaces the member data of the session's user (ARGV[7]);
-- nothing changes if it is already that. A session that has not entered
-- gets result not_member.

local user = redis.call('HGET', SS, SESSION)
if not user then
  return reply('not_member', '', 0, 0, nil)
end
local m = member_get(user)
local data = ARGV[7]
if data == m.data then
  return reply('ok', '', 0, 0, user, m)
end
local old = { conns = m.conns, since = m.since, data = m.data }
m.data = data
member_put(user, m)
local seq = announce(user, 'updated', m, '')
return reply('ok', 'updated', 0, seq, user, m, old)
