-- quota: included (see hookfan/scripts/__init__.py) by the scripts that take copies and
-- requests off their hosts' counters in hookfan:quota (hookfan/keys.py). free() gathers them
-- per host; release() then writes one HINCRBY per host and figure, and deletes a field that
-- reaches 0, so a counter is never negative.
local freed = {}  -- host -> {copies, bytes}

-- A copy of the request whose 'q' field ('<stored bytes> <host>') is q left Redis; last: the
-- request left with it. A request stored before quotas has no 'q' and was never counted.
local function free(q, last)
  if not q then return end
  local size, host = string.match(q, '^(%d+) (.*)$')
  local f = freed[host] or {0, 0}
  freed[host] = {f[1] + 1, f[2] + (last and tonumber(size) or 0)}
end

local function release(key)
  for host, f in pairs(freed) do
    for field, by in pairs({['p:' .. host] = f[1], ['b:' .. host] = f[2]}) do
      if by > 0 and redis.call('HINCRBY', key, field, -by) <= 0 then
        redis.call('HDEL', key, field)
      end
    end
  end
end
