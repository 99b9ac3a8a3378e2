-- purge: delete dead letters, and each one's request once no copy of it is left. One call per
-- chunk of ids (the CLI's purge, the worker's retention).
--
-- KEYS[1] hookfan:dl       hash, dead-lettered delivery id -> JSON record
-- KEYS[2] hookfan:dead     zset, dead-lettered delivery id -> ms
-- KEYS[3] hookfan:dlcount  hash, '<route> <url>' -> dead letters of that pair
-- KEYS[4] hookfan:quota    hash, 'p:<host>' copies, 'b:<host>' stored bytes per host
-- KEYS[4 + i]              hookfan:req:<request id> of the i-th dead letter
--
-- ARGV[1] only those dead-lettered at or before this ms ('+inf': any), then the ids, in the
-- order of their request keys.
--
-- Returns {route, url, purged, route, url, purged, ...} for what it purged; an id that is not
-- a dead letter (or one dead-lettered after ARGV[1]) is left as it is. Each purged dead
-- letter leaves its host's count in KEYS[4], and its request's stored bytes leave with the
-- request (read from the request's 'q'; a request stored without it was never counted).
-- include: quota
local limit = ARGV[1]
local by = {}
local order = {}
for i = 2, #ARGV do
  local did = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], did)
  local v = redis.call('HGET', KEYS[1], did)
  if v and (limit == '+inf' or (score and tonumber(score) <= tonumber(limit))) then
    local d = cjson.decode(v)
    redis.call('HDEL', KEYS[1], did)
    redis.call('ZREM', KEYS[2], did)
    local pair = d[2] .. ' ' .. d[1]
    if d[7] and redis.call('HINCRBY', KEYS[3], pair, -1) <= 0 then
      redis.call('HDEL', KEYS[3], pair)
    end
    local req = KEYS[3 + i]
    local q = redis.call('HGET', req, 'q')
    local last = redis.call('HINCRBY', req, 'n', -1) <= 0
    if last then redis.call('DEL', req) end
    free(q, last)
    if not by[pair] then
      by[pair] = {d[2], d[1], 0}
      table.insert(order, pair)
    end
    by[pair][3] = by[pair][3] + 1
  end
end
release(KEYS[4])
local out = {}
for _, pair in ipairs(order) do
  for _, x in ipairs(by[pair]) do table.insert(out, x) end
end
return out
