-- replay: put dead letters back in their backends' ready queues with a fresh retry age and
-- attempt count (each generation is kept, so outcomes of older attempts stay stale). One call
-- per chunk of ids; a paced replay spaces the chunk's due times.
--
-- KEYS[1] hookfan:dl       hash, dead-lettered delivery id -> JSON record
-- KEYS[2] hookfan:dead     zset, dead-lettered delivery id -> ms
-- KEYS[3] hookfan:due      zset, backend url -> ms the dispatcher should act
-- KEYS[4] hookfan:owned    zset, backend url -> ms its task's ownership lapses
-- KEYS[5] hookfan:backends set of backend urls
-- KEYS[6] hookfan:dlcount  hash, '<route> <url>' -> dead letters of that pair
-- KEYS[5 + 2u], KEYS[6 + 2u]  hookfan:q:<url>, hookfan:c:<url> of the chunk's u-th url
--
-- ARGV[1] ms between two replayed copies' due times (0: all due now), ARGV[2] the earliest due
-- time (ms) to give (0: none; a paced replay passes what the previous chunk returned), ARGV[3]
-- u urls, then the u urls, then per dead letter: delivery id, the index (1..u) of its url (read
-- by the caller).
--
-- Returns {replayed, the due time (ms) the next copy of a paced replay should get}. An id that
-- is no longer a dead letter, or whose url is not the one given (it changed meanwhile), is
-- skipped. The k-th copy replayed becomes due at start + (k - 1) * ARGV[1], start being now or
-- ARGV[2] if later, and its retry age starts then.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gap, nurls = tonumber(ARGV[1]), tonumber(ARGV[3])
local start = math.max(now, tonumber(ARGV[2]))
local first = {}
local done = 0
for i = 4 + nurls, #ARGV, 2 do
  local did, u = ARGV[i], tonumber(ARGV[i + 1])
  local url = ARGV[3 + u]
  local v = redis.call('HGET', KEYS[1], did)
  local d = v and cjson.decode(v)
  if d and d[1] == url then
    local due = start + math.floor(done * gap)
    redis.call('HDEL', KEYS[1], did)
    redis.call('ZREM', KEYS[2], did)
    if d[7] then redis.call('HINCRBY', KEYS[6], d[2] .. ' ' .. url, -1) end
    redis.call('HSET', KEYS[6 + 2 * u], did, string.format('%d 0 %d %s', d[3], due, d[2]))
    redis.call('ZADD', KEYS[5 + 2 * u], due, did)
    if not first[u] then first[u] = due end
    done = done + 1
  end
end
local wake = false
for u, due in pairs(first) do
  local url = ARGV[3 + u]
  redis.call('SADD', KEYS[5], url)
  local owner = redis.call('ZSCORE', KEYS[4], url)
  if not owner or tonumber(owner) < now then
    if redis.call('ZADD', KEYS[3], 'LT', 'CH', due, url) == 1 then wake = true end
  end
end
if wake then redis.call('PUBLISH', 'hookfan:wake', '1') end
return {done, start + math.floor(done * gap)}
