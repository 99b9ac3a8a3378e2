-- accept: store one request and a pending copy per backend, atomically (the intake's 202).
--
-- KEYS[1]  hookfan:req:<request id>   hash, the request (see hookfan/keys.py)
-- KEYS[2]  hookfan:dedupe:<digest>    string, the first request with this provider id
--                                     (KEYS[1] again when de-duplication is off)
-- KEYS[3]  hookfan:fence:<request id> string, set by resolve.lua once the intake answered 503
-- KEYS[4]  hookfan:due                zset, backend url -> ms the dispatcher should act
-- KEYS[5]  hookfan:owned              zset, backend url -> ms its task's ownership lapses
-- KEYS[6]  hookfan:backends           set of backend urls
-- KEYS[7]  hookfan:quota              hash, 'p:<host>' copies, 'b:<host>' stored bytes
-- KEYS[6 + 2i], KEYS[7 + 2i]          hookfan:q:<url>, hookfan:c:<url> of copy i (i = 1..n)
-- KEYS[8 + 2n] (optional)             hookfan:seen:<digest>, string: a signed request already
--                                     accepted (only for hosts with spec.verify)
--
-- ARGV[1] '1' to de-duplicate, ARGV[2] window ms, ARGV[3] request id, ARGV[4] copies n,
-- ARGV[5] k field pairs of the request, ARGV[6] host (as matched), ARGV[7] the request's
-- stored bytes, ARGV[8] most copies the host may hold, ARGV[9] most stored bytes (0: no cap),
-- then 2k values, then per copy: delivery id, url, route; with KEYS[8 + 2n], last the ms that
-- key is kept (how long the signature stays acceptable).
--
-- Returns nil when stored; the first request's '<request id>:<copies>' when KEYS[2] names one;
-- 'fenced' (nothing written) when the intake already gave up on this call and answered 503;
-- {'quota', 'pending' or 'bytes'} (nothing written) when the request would take its host past
-- a cap; {'replayed'} (nothing written) when KEYS[8 + 2n] exists. A stored request adds its
-- copies and bytes to its host's fields in KEYS[7] and keeps '<bytes> <host>' in its field
-- 'q', for the scripts that take them off again.
-- Every time is Redis's clock (ms; a copy's ready score keeps the microseconds, see below).
-- A backend owned by a running task is not made due: that
-- task claims the new copy itself. Wakes the dispatchers (Pub/Sub, not persisted) only when a
-- backend became due earlier than it was.
if redis.call('EXISTS', KEYS[3]) == 1 then return 'fenced' end
local n = tonumber(ARGV[4])
local seen = KEYS[8 + 2 * n]
if seen and redis.call('EXISTS', seen) == 1 then return {'replayed'} end
if ARGV[1] == '1' then
  local first = redis.call('GET', KEYS[2])
  if first then return first end
end
local host, size = ARGV[6], tonumber(ARGV[7])
local most_copies, most_bytes = tonumber(ARGV[8]), tonumber(ARGV[9])
local pf, bf = 'p:' .. host, 'b:' .. host
if most_copies > 0 or most_bytes > 0 then
  local held = redis.call('HMGET', KEYS[7], pf, bf)
  if most_copies > 0 and tonumber(held[1] or 0) + n > most_copies then
    return {'quota', 'pending'}
  end
  if most_bytes > 0 and tonumber(held[2] or 0) + size > most_bytes then
    return {'quota', 'bytes'}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The ready score keeps the microseconds: accept order is the order of these calls (an
-- ordered backend's delivery order), and two calls never run within one microsecond. It is
-- 1 ms early, so that it is never above the whole ms the other scripts call now (a copy is
-- due at once, as with a score of now).
local at = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 - 1
local k = tonumber(ARGV[5])
local fields = {}
for j = 1, 2 * k do fields[j] = ARGV[9 + j] end
redis.call('HSET', KEYS[1], 'n', n, 'q', size .. ' ' .. host, unpack(fields))
redis.call('HINCRBY', KEYS[7], pf, n)
redis.call('HINCRBY', KEYS[7], bf, size)
local i = 10 + 2 * k
local urls = {}
for c = 1, n do
  local did, url, route = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('ZADD', KEYS[6 + 2 * c], at, did)
  redis.call('HSET', KEYS[7 + 2 * c], did, '0 0 ' .. now .. ' ' .. route)
  urls[c] = url
  i = i + 3
end
-- One call each for all the request's backends (a call costs more than its work here).
local wake = false
if n > 0 then
  redis.call('SADD', KEYS[6], unpack(urls))
  local owners = redis.call('ZMSCORE', KEYS[5], unpack(urls))
  local due = {}
  for c = 1, n do
    if not owners[c] or tonumber(owners[c]) < now then
      due[#due + 1] = now
      due[#due + 1] = urls[c]
    end
  end
  wake = #due > 0 and redis.call('ZADD', KEYS[4], 'LT', 'CH', unpack(due)) > 0
end
if ARGV[1] == '1' then redis.call('SET', KEYS[2], ARGV[3] .. ':' .. n, 'PX', ARGV[2]) end
if seen then redis.call('SET', seen, '1', 'PX', ARGV[#ARGV]) end
if wake then redis.call('PUBLISH', 'hookfan:wake', '1') end
return false
