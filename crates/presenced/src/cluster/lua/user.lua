-- presenced: the helpers of the user scripts, after prelude.lua.
--
-- KEYS[2] = {...}:u:<user>, hash: c conns, l live (with a socket),
--           a away, st online|away|offline, si since, ll last live (ms),
--           ep epoch, n events so far in the epoch
-- KEYS[3] = {...}:s:<user>, hash: session -> '<token> <live> <away> <dropped_at>'
-- KEYS[4] = {...}:events, the partition's event stream
-- ARGV[4] = user id, ARGV[5] = session, ARGV[6] = the user's shard channel
--
-- Every user script replies
-- {result, change, now, status, since, last_seen, conns, extra...}:
-- result ok | exists | no_session; change '' | online | away | offline;
-- last_seen is the last live time (0 when never).

local U, S, EV = KEYS[2], KEYS[3], KEYS[4]
local USER, SESSION, PUB = ARGV[4], ARGV[5], ARGV[6]

local function user_get()
  local v = redis.call('HMGET', U, 'c', 'l', 'a', 'st', 'si', 'll', 'ep', 'n')
  return {
    c = tonumber(v[1]) or 0,
    l = tonumber(v[2]) or 0,
    a = tonumber(v[3]) or 0,
    st = v[4] or 'offline',
    si = tonumber(v[5]) or 0,
    ll = tonumber(v[6]) or 0,
    ep = tonumber(v[7]) or 0,
    n = tonumber(v[8]) or 0,
  }
end

local function user_put(u)
  redis.call('HSET', U, 'c', d(u.c), 'l', d(u.l), 'a', d(u.a), 'st', u.st,
    'si', d(u.si), 'll', d(u.ll), 'ep', d(u.ep), 'n', d(u.n))
end

-- A session: owner token, live, away, when its socket went (0 if live).
local function session_get()
  local v = redis.call('HGET', S, SESSION)
  if not v then
    return nil
  end
  local owner, live, away, dropped = string.match(v, '^(%d+) (%d) (%d) (%d+)$')
  return { owner = owner, live = tonumber(live), away = tonumber(away), dropped = tonumber(dropped) }
end

local function session_put(s)
  redis.call('HSET', S, SESSION, s.owner .. ' ' .. d(s.live) .. ' ' .. d(s.away) .. ' ' .. d(s.dropped))
end

local function not_owner()
  return redis.error_reply('NOTOWNER the session belongs to another node')
end

-- Away when every connection is away, else online; the new status if it
-- changed.
local function recompute(u)
  local status = 'online'
  if u.a == u.c then
    status = 'away'
  end
  if status == u.st then
    return ''
  end
  u.st = status
  u.si = NOW
  return status
end

-- Records the change in the stream (webhook events: user.online,
-- user.away, user.offline) and publishes it on the user's shard channel.
-- The event id is a function of the user, its epoch and the event's rank
-- in the epoch.
local function announce(u, change, reason, last_seen)
  if change == '' then
    return
  end
  local id = event_id('u', USER, d(u.ep), d(u.n))
  u.n = u.n + 1
  local fields = { 'id', id, 'type', 'user.' .. change, 'user', USER, 'at', d(NOW) }
  if change == 'offline' then
    table.insert(fields, 'reason')
    table.insert(fields, reason)
    table.insert(fields, 'last_seen')
    table.insert(fields, d(last_seen))
  end
  redis.call('XADD', EV, '*', unpack(fields))
  redis.call('SPUBLISH', PUB, '{"user":' .. cjson.encode(USER) .. ',"status":"' .. u.st ..
    '","since":' .. d(u.si) .. ',"last_seen":' .. d(last_seen) .. ',"id":"' .. id .. '"}')
end

-- The user's last live time: now while a socket is open.
local function last_seen(u)
  if u.l > 0 then
    return NOW
  end
  return u.ll
end

local function reply(result, change, u, ...)
  return done({ result, change, NOW, u.st, u.si, last_seen(u), u.c, ... })
end
