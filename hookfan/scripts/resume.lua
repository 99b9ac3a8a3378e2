-- resume: claim a paused backend's copies again, with the paused time left out of their age.
-- Called repeatedly until it answers done; each call moves at most ARGV[2] copies, so Redis
-- is never held for long whatever the backlog.
--
-- KEYS[1] hookfan:paused   hash, backend url -> JSON {since ms, by, reason[, until ms, cursor]}
-- KEYS[2] hookfan:c:<url>  hash, delivery id -> '<generation> <attempts> <t0 ms> <route>'
-- KEYS[3] hookfan:q:<url>  zset, delivery id -> ms its next attempt is due
-- KEYS[4] hookfan:due      zset, backend url -> ms the dispatcher should act
-- KEYS[5] hookfan:failing  hash, backend url -> ms of its first failure since a delivery
-- KEYS[6] hookfan:owned    zset, backend url -> ms its task's ownership lapses
-- KEYS[7] hookfan:cr:<url> hash, the copies of KEYS[2] not yet moved (same layout)
--
-- ARGV[1] url, ARGV[2] most copies to move in this call
--
-- The first call stamps the resume time ('until') and renames KEYS[2] to KEYS[7] (new copies
-- accepted meanwhile go to a fresh KEYS[2]). Each call then takes copies off KEYS[7] and
-- writes them back to KEYS[2] with their retry-age start t0 moved forward by the time they
-- spent paused: until - max(t0, since). A copy accepted before the pause thus has the age it
-- had when paused; one accepted during the pause starts its age at the resume. A copy is moved
-- once: it leaves KEYS[7] as it is written back, so a call repeated after an error (or a
-- second `hookfan backends resume`) goes on where the last one stopped. The backend stays
-- paused (nothing claims it) until KEYS[7] is empty; then the entry goes, the backend becomes
-- due at its earliest due copy (unless a task still owns it: that task's settle hands it back
-- itself), its failure clock (--auto-pause-after) starts again and the dispatchers are woken.
-- This is the only per-copy work of a pause: nothing is written per copy while paused, and
-- claims of backends never paused do no extra work.
--
-- Returns {copies moved by this call, ms the backend was paused, 1 when resumed (0: call
-- again)}, or -1 when the backend is not paused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local url, most = ARGV[1], tonumber(ARGV[2])
local raw = redis.call('HGET', KEYS[1], url)
if not raw then return -1 end
local rec = cjson.decode(raw)
local since = tonumber(rec.since) or now
if not rec['until'] then
  rec['until'], rec.cursor = now, '0'
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[7]) end
end
local stop = tonumber(rec['until'])
local cursor, moved, updates, gone = rec.cursor, 0, {}, {}
repeat
  local page = redis.call('HSCAN', KEYS[7], cursor, 'COUNT', math.min(most, 1000))
  cursor = page[1]
  local items = page[2]
  for i = 1, #items, 2 do
    local value = items[i + 1]
    local g, a, t0, route = string.match(value, '^(%d+) (%d+) (%d+) (.*)$')
    t0 = tonumber(t0)
    if t0 and t0 < stop then
      value = g .. ' ' .. a .. ' ' .. (t0 + (stop - math.max(t0, since))) .. ' ' .. route
    end
    table.insert(updates, items[i])
    table.insert(updates, value)
    table.insert(gone, items[i])
  end
until cursor == '0' or #gone >= most
for s = 1, #gone, 1000 do
  redis.call('HSET', KEYS[2], unpack(updates, 2 * s - 1, math.min(2 * (s + 999), #updates)))
  redis.call('HDEL', KEYS[7], unpack(gone, s, math.min(s + 999, #gone)))
end
moved = #gone
if redis.call('EXISTS', KEYS[7]) == 1 then
  rec.cursor = cursor
  redis.call('HSET', KEYS[1], url, cjson.encode(rec))
  return {moved, stop - since, 0}
end
redis.call('HDEL', KEYS[1], url)
redis.call('HDEL', KEYS[5], url)
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local owner = tonumber(redis.call('ZSCORE', KEYS[6], url) or 0)
if first[2] and owner < now then
  redis.call('ZADD', KEYS[4], 'LT', tonumber(first[2]), url)
  if tonumber(first[2]) <= now then redis.call('PUBLISH', 'hookfan:wake', '1') end
end
return {moved, stop - since, 1}
