-- dlcount: bring dead letters written before hookfan kept their body size into the per-route
-- count (hookfan:dlcount), once each. The worker runs it over every dead letter at start.
--
-- KEYS[1] hookfan:dl       hash, dead-lettered delivery id -> JSON record
-- KEYS[2] hookfan:dlcount  hash, '<route> <url>' -> dead letters of that pair
-- KEYS[2 + i]              hookfan:req:<request id> of the i-th id
--
-- ARGV: the ids, in the order of their request keys.
-- Returns how many records it counted. A record with a 7th element (its body size, -1 when
-- unknown) is counted already and left as it is; one without gets the stored body's size and
-- is counted. Running it twice counts nothing twice.
local n = 0
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local d = cjson.decode(v)
    if not d[7] then
      local size = 0
      if redis.call('TYPE', KEYS[2 + i]).ok == 'hash' then
        size = redis.call('HSTRLEN', KEYS[2 + i], 'b')
      end
      d[7] = size
      redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(d))
      redis.call('HINCRBY', KEYS[2], d[2] .. ' ' .. d[1], 1)
      n = n + 1
    end
  end
end
return n
