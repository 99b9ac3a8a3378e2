-- accept: store one request and a pending copy per backend, atomically (the intake's 202).
--
-- KEYS[1]  hookfan:req:<request id>   hash, the request (see hookfan/keys.py)
-- KEYS[2]  hookfan:dedupe:<digest>    string, the first request with this provider id
--                                     (KEYS[1] again when de-duplication is off)
-- KEYS[3]  hookfan:due                zset, backend url -> ms the dispatcher should act
-- KEYS[4]  hookfan:owned              zset, backend url -> ms its task's ownership lapses
-- KEYS[5]  hookfan:backends           set of backend urls
-- KEYS[4 + 2i], KEYS[5 + 2i]          hookfan:q:<url>, hookfan:c:<url> of copy i (i = 1..n)
--
-- ARGV[1] '1' to de-duplicate, ARGV[2] window ms, ARGV[3] request id, ARGV[4] copies n,
-- ARGV[5] k field pairs of the request, then 2k values, then per copy: delivery id, url, route.
--
-- Returns nil when stored; the first request's '<request id>:<copies>' when KEYS[2] names one.
-- Every time is Redis's clock (ms). A backend owned by a running task is not made due: that
-- task claims the new copy itself. Wakes the dispatchers (Pub/Sub, not persisted) only when a
-- backend became due earlier than it was.
if ARGV[1] == '1' then
  local first = redis.call('GET', KEYS[2])
  if first then return first end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[4])
local k = tonumber(ARGV[5])
local fields = {}
for j = 1, 2 * k do fields[j] = ARGV[5 + j] end
redis.call('HSET', KEYS[1], 'n', n, unpack(fields))
local i = 6 + 2 * k
local wake = false
for c = 1, n do
  local did, url, route = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('ZADD', KEYS[4 + 2 * c], now, did)
  redis.call('HSET', KEYS[5 + 2 * c], did, '0 0 ' .. now .. ' ' .. route)
  redis.call('SADD', KEYS[5], url)
  local owner = redis.call('ZSCORE', KEYS[4], url)
  if not owner or tonumber(owner) < now then
    if redis.call('ZADD', KEYS[3], 'LT', 'CH', now, url) == 1 then wake = true end
  end
  i = i + 3
end
if ARGV[1] == '1' then redis.call('SET', KEYS[2], ARGV[3] .. ':' .. n, 'PX', ARGV[2]) end
if wake then redis.call('PUBLISH', 'hookfan:wake', '1') end
return false
