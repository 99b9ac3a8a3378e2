-- dlpage: the next dead letters a selection takes, in dead-lettered order (read only), so list,
-- stats, replay, purge and retention walk millions of them in bounded steps.
--
-- KEYS[1] hookfan:dead   zset, dead-lettered delivery id -> ms (Redis clock)
-- KEYS[2] hookfan:dl     hash, dead-lettered delivery id -> JSON record (see hookfan/keys.py)
--
-- ARGV[1] cursor ms, ARGV[2] cursor id ('' at the start: nothing at ARGV[1] is skipped),
-- ARGV[3] up to this ms (inclusive, or '+inf'), ARGV[4] most entries to return, ARGV[5] most
-- entries to look at (bounds the call's time), ARGV[6] route, ARGV[7] backend url, ARGV[8] a
-- substring of the last error ('' for any of the three).
--
-- Returns {now ms, 1 when the range is exhausted else 0, cursor ms, cursor id,
--          id, ms, record, id, ms, record, ...}: the entries after the cursor that match, in
-- zset order (by ms, then id). Pass the returned cursor to the next call. Entries of equal ms
-- are ordered by id, so those at the cursor ms whose id sorts at or before the cursor id were
-- looked at before and are skipped: the cursor works whether or not its id is still a dead
-- letter (a replay or a purge removes it).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cms, cid, to = ARGV[1], ARGV[2], ARGV[3]
local most, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local route, url, reason = ARGV[6], ARGV[7], ARGV[8]
local BATCH = 500

-- byte order, as the zset orders ties (Lua's own '<' follows the server's locale)
local function after(a, b)
  for k = 1, math.min(#a, #b) do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x > y end
  end
  return #a > #b
end

local found, seen, offset, exhausted = {}, 0, 0, 0
while seen < budget and #found < 3 * most do
  local rows = redis.call('ZRANGE', KEYS[1], cms, to, 'BYSCORE', 'LIMIT', offset, BATCH,
                          'WITHSCORES')
  local moved, full = false, #found
  for j = 1, #rows, 2 do
    local id, ms = rows[j], rows[j + 1]
    if cid == '' or tonumber(ms) > tonumber(cms) or after(id, cid) then
      moved, seen, cms, cid = true, seen + 1, ms, id
      local v = redis.call('HGET', KEYS[2], id)
      if v then
        local d = cjson.decode(v)
        if (route == '' or d[2] == route) and (url == '' or d[1] == url)
            and (reason == '' or string.find(d[6], reason, 1, true)) then
          table.insert(found, id)
          table.insert(found, ms)
          table.insert(found, v)
          if #found >= 3 * most or seen >= budget then break end
        end
      end
      if seen >= budget then break end
    end
  end
  full = (#found >= 3 * most) or seen >= budget
  if not full and #rows < 2 * BATCH then
    exhausted = 1
    break
  end
  -- a whole batch of ties looked at before: look past them
  if moved then offset = 0 else offset = offset + BATCH end
end
local out = {now, exhausted, cms, cid}
for _, x in ipairs(found) do table.insert(out, x) end
return out
