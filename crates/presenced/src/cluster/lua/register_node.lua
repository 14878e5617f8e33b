#!lua
-- register_node: a node joins the cluster and gets a fencing token and a
-- lease. KEYS[1] = {<prefix>:nodes} (node id -> '<token> <deadline>'),
-- KEYS[2] = {<prefix>:nodes}:token (the counter), KEYS[3] =
-- {<prefix>:nodes}:lapsed (token -> '<node> <deadline>' of a registration
-- the same node id made before); ARGV[1] = node id, ARGV[2] = lease (ms).
-- Replies {token, deadline, now, previous token, previous deadline}
-- (0 0 when the node id is new).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, lease = ARGV[1], tonumber(ARGV[2])
local token = redis.call('INCR', KEYS[2])
local prev_token, prev_deadline = 0, 0
local prev = redis.call('HGET', KEYS[1], node)
if prev then
  local pt, pd = string.match(prev, '^(%d+) (%d+)$')
  prev_token, prev_deadline = tonumber(pt), tonumber(pd)
  redis.call('HSET', KEYS[3], pt, node .. ' ' .. pd)
end
local deadline = now + lease
redis.call('HSET', KEYS[1], node, string.format('%d %d', token, deadline))
return { token, deadline, now, prev_token, prev_deadline }
