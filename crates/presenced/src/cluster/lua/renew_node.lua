#!lua
-- renew_node: extends a node's lease to now + ARGV[3] ms. KEYS[1] =
-- {<prefix>:nodes}; ARGV[1] = node id, ARGV[2] = its token. Refused
-- (FENCED) when the node id has registered again since (another token) or
-- when the lease has lapsed: a lapsed lease is never renewed, the node
-- registers afresh. Replies {deadline, now}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then
  return redis.error_reply('FENCED this node is not registered')
end
local token, deadline = string.match(rec, '^(%d+) (%d+)$')
if token ~= ARGV[2] then
  return redis.error_reply('FENCED this node has registered again since')
end
if now >= tonumber(deadline) then
  return redis.error_reply('FENCED the lease of this node has lapsed')
end
local new_deadline = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%s %d', token, new_deadline))
return { new_deadline, now }
