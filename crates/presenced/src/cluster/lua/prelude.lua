#!lua
-- presenced: the helpers every write script starts with (scripts cannot
-- load one another; the server prepends this file). The shebang makes
-- Redis Cluster refuse any key or shard channel outside the script's slot.
--
-- Every write script takes KEYS[1] = its replay record
-- ({...}:r:<token>:<op>) and ARGV[1] = the node's fencing token,
-- ARGV[2] = the node's lease deadline (unix ms, as `renew` gave it),
-- ARGV[3] = the op id. Numbers go into strings with %d only: Lua's own
-- conversion keeps 14 digits, and microseconds have 16.

local REPLAY_TTL_S = 120

local function d(n)
  return string.format('%d', n)
end

-- Redis's own clock: {unix ms, unix us}.
local function clock()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end

local NOW, NOW_US = clock()
local TOKEN = ARGV[1]
local DEADLINE = tonumber(ARGV[2])

-- A write whose lease has lapsed is refused before it reads anything.
local function fenced()
  if DEADLINE == nil or NOW >= DEADLINE then
    return redis.error_reply('FENCED the lease of this node has lapsed')
  end
  return nil
end

-- The reply of a write already applied under this token and op id.
local function replayed()
  local v = redis.call('GET', KEYS[1])
  if v then
    return cmsgpack.unpack(v)
  end
  return nil
end

-- Keeps the reply for a retry, and returns it.
local function done(reply)
  redis.call('SET', KEYS[1], cmsgpack.pack(reply), 'EX', REPLAY_TTL_S)
  return reply
end

-- A deterministic event id: the first 32 hex digits of a SHA-1.
local function event_id(...)
  return string.sub(redis.sha1hex(table.concat({...}, '\0')), 1, 32)
end

do
  local err = fenced()
  if err then
    return err
  end
  local again = replayed()
  if again then
    return again
  end
end
