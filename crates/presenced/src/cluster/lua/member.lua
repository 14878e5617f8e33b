-- presenced: the helpers of the member scripts, after prelude.lua.
--
-- KEYS[2] = {...}:m:<channel>, hash: user -> '<conns> <since> <data JSON>'
-- KEYS[3] = {...}:s:<channel>, hash: session -> user (the sessions that
--           entered; their count is the channel's connection count)
-- KEYS[4] = {...}:q:<channel>, the channel's sequence number
-- KEYS[5] = {...}:events, the partition's event stream
-- ARGV[4] = channel, ARGV[5] = session, ARGV[6] = the channel's shard channel
--
-- Every member script replies
-- {result, change, conns_changed, seq, members, connections, now, user,
--  conns, since, data, old_conns, old_since, old_data}:
-- result ok | full | not_member; change '' | joined | updated | left;
-- seq 0 when nothing changed; the member as it is now (conns 0 once it
-- left) and, for updated and left, as it was.

-- A channel's sequence number lives on for an hour after its last member
-- left, so a channel that fills again continues it.
local SEQ_TTL_S = 3600

local M, SS, Q, EV = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local CHANNEL, SESSION, PUB = ARGV[4], ARGV[5], ARGV[6]

local function member_get(user)
  local v = redis.call('HGET', M, user)
  if not v then
    return nil
  end
  local conns, since, data = string.match(v, '^(%d+) (%d+) (.*)$')
  return { conns = tonumber(conns), since = tonumber(since), data = data }
end

local function member_put(user, m)
  redis.call('HSET', M, user, d(m.conns) .. ' ' .. d(m.since) .. ' ' .. m.data)
end

-- The next sequence number. A channel new to Redis (or whose number has
-- expired) starts at Redis's clock in microseconds: later than any number
-- it had before, so nodes see a gap and resync.
local function next_seq()
  if redis.call('EXISTS', Q) == 0 then
    redis.call('SET', Q, d(NOW_US))
  else
    redis.call('PERSIST', Q)
  end
  return redis.call('INCR', Q)
end

-- The occupancy after the change: {members, connections}.
local function occupancy()
  return redis.call('HLEN', M), redis.call('HLEN', SS)
end

-- Bumps the sequence number, publishes the change with it and, for joined
-- and left, records the webhook event. `m` is the member now (nil once it
-- left). Returns the sequence number.
local function announce(user, change, m, reason)
  local seq = next_seq()
  local members, connections = occupancy()
  local head = '{"seq":' .. d(seq) .. ',"user":' .. cjson.encode(user)
  local tail = ',"members":' .. d(members) .. ',"connections":' .. d(connections) .. '}'
  local msg
  if m then
    -- A join, a data update or a change of the member's connection count.
    local kind = 'update'
    if change == 'joined' then
      kind = 'join'
    end
    msg = head .. ',"kind":"' .. kind .. '","conns":' .. d(m.conns) .. ',"since":' ..
      d(m.since) .. ',"data":' .. m.data .. tail
  else
    msg = head .. ',"kind":"leave","reason":"' .. reason .. '"' .. tail
  end
  redis.call('SPUBLISH', PUB, msg)
  if change == 'joined' or change == 'left' then
    local fields = { 'id', event_id('m', CHANNEL, d(seq)), 'type', 'member.' .. change,
      'user', user, 'channel', CHANNEL, 'at', d(NOW) }
    if change == 'left' then
      table.insert(fields, 'reason')
      table.insert(fields, reason)
    end
    redis.call('XADD', EV, '*', unpack(fields))
  end
  if members == 0 then
    redis.call('EXPIRE', Q, SEQ_TTL_S)
  end
  return seq
end

local function reply(result, change, conns_changed, seq, user, m, old)
  local members, connections = occupancy()
  m = m or { conns = 0, since = 0, data = '' }
  old = old or { conns = 0, since = 0, data = '' }
  return done({ result, change, conns_changed, seq, members, connections, NOW, user or '',
    m.conns, m.since, m.data, old.conns, old.since, old.data })
end
