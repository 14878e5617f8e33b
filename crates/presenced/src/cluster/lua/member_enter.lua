-- member_enter: a session enters the channel. A session that entered
-- before is no new connection; data (ARGV[8], '' for none) replaces the
-- member's, last writer wins. A new member gets the data or else ARGV[9],
-- unless the channel has ARGV[10] members already (0: no limit; result
-- full, nothing changes). ARGV[7] = the session's user.

local user = ARGV[7]
local data = ARGV[8]
local entered = redis.call('HGET', SS, SESSION)
if entered and entered ~= user then
  return redis.error_reply('BADSESSION the session entered as another user')
end
local m = member_get(user)
if not m then
  local max = tonumber(ARGV[10])
  if max > 0 and redis.call('HLEN', M) >= max then
    return reply('full', '', 0, 0, user)
  end
  if data == '' then
    data = ARGV[9]
  end
  m = { conns = 1, since = NOW, data = data }
  member_put(user, m)
  redis.call('HSET', SS, SESSION, user)
  local seq = announce(user, 'joined', m, '')
  return reply('ok', 'joined', 1, seq, user, m)
end
local conns_changed = 0
if not entered then
  m.conns = m.conns + 1
  redis.call('HSET', SS, SESSION, user)
  conns_changed = 1
end
-- As the member was before the new data, with the new connection counted.
local old = { conns = m.conns, since = m.since, data = m.data }
local change = ''
if data ~= '' and data ~= m.data then
  m.data = data
  change = 'updated'
end
if change == '' and conns_changed == 0 then
  return reply('ok', '', 0, 0, user, m)
end
member_put(user, m)
local seq = announce(user, change, m, '')
if change == '' then
  old = nil
end
return reply('ok', change, conns_changed, seq, user, m, old)
