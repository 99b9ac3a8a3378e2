-- settle: record a batch's outcomes, expire lapsed leases, then claim the next batch for the
-- same task (or end the task's ownership of the backend). One call per batch of a
-- hookfan.deliver task; the backend is one URL.
--
-- KEYS[1] hookfan:q:<url>   zset, delivery id -> ms its next attempt is due
-- KEYS[2] hookfan:f:<url>   zset, delivery id -> ms its lease runs out (claimed copies)
-- KEYS[3] hookfan:c:<url>   hash, delivery id -> '<generation> <attempts> <t0 ms> <route>'
-- KEYS[4] hookfan:s:<url>   zset, '<token>:<k>' -> ms the sender slot's lease runs out
-- KEYS[5] hookfan:due       zset, backend url -> ms the dispatcher should act
-- KEYS[6] hookfan:owned     zset, backend url -> ms its task's ownership lapses
-- KEYS[7] hookfan:stats     hash, per-backend figures for RequestClone status
-- KEYS[8] hookfan:dead      zset, dead-lettered delivery id -> ms
-- KEYS[9] hookfan:dl        hash, dead-lettered delivery id -> JSON of its record
-- KEYS[10] hookfan.deliveries  the Celery queue (read only: are other tasks waiting?)
-- KEYS[11] hookfan:dlcount  hash, '<route> <url>' -> dead letters of that pair
-- KEYS[12] hookfan:quota    hash, 'p:<host>' copies, 'b:<host>' stored bytes per host
-- KEYS[13] hookfan:t:<url>   hash, 'k' tokens and 'ts' ms (rate limit); 'hold' ms and 'head'
--                            delivery id (ordered: the failing head waits until then)
-- KEYS[13 + j]              hookfan:req:<id> of the j-th outcome of kind 'd'
-- then, last of all (after the request keys, whatever their number):
-- KEYS[#KEYS - 2] hookfan:paused   hash, backend url -> JSON {since ms, by, reason}
-- KEYS[#KEYS - 1] hookfan:failing  hash, backend url -> ms of its first failure since a
--                                  delivery (kept only with --auto-pause-after)
-- KEYS[#KEYS]     hookfan:pausedevents  list of JSON auto-pauses for the operator's Events
--
-- ARGV[1] url, ARGV[2] task token, ARGV[3] slots the token held (released here),
-- ARGV[4] copies wanted (0: the task ends), ARGV[5] senders wanted, ARGV[6] cap (0: none),
-- ARGV[7] lease ms, ARGV[8] hold ms, ARGV[9] max retry age ms, ARGV[10] min retry delay ms,
-- ARGV[11] max retry delay ms, ARGV[12] jitter seed, ARGV[13] '1' to linger (keep the ownership
-- when nothing is due, for a task that waits a moment for new copies), ARGV[14] attempts
-- started per second (0: no rate limit), ARGV[15] the token bucket's size, ARGV[16] '1' for
-- ordered delivery, ARGV[17] m outcomes, then per outcome:
-- delivery id, generation, kind, delay ms, reason, body bytes (-1: unknown); last of all
-- (ARGV[#ARGV]) the auto-pause threshold ms (0: off). Kinds: 'd'
-- delivered, 'r' retry after the delay, 'x' dead letter, 'u' never sent (the task ran out of its
-- send window: no attempt). A dead letter keeps its body size, so listing never reads a body.
--
-- An outcome counts only if the copy is in flight with that generation (its attempt token);
-- any other is stale and changes nothing. A lease that ran out is a failed attempt
-- ('LeaseExpired', its delay drawn as policy.retry_delay draws it). A copy past the max retry
-- age is dead-lettered when claimed or when its next due time would pass it
-- ('MaxRetryAgeExceeded' when claimed). At most cap senders hold slots at once; the in-flight
-- set holds the claimed copies. Every dead letter is counted in KEYS[11]. A delivered copy
-- leaves its host's count in KEYS[12], and its request's stored bytes leave with the request
-- (read from the request's 'q'; a request stored without it was never counted). A dead
-- letter still counts there, as its copy did.
--
-- A paused backend (hookfan backends pause) gets no claim, and its task's ownership ends
-- without making it due (resume.lua does). With the auto-pause threshold set, a batch that
-- recorded failures and no delivery pauses the backend once its first failure since the last
-- delivery (or since it last had nothing pending) is that old, and tells the operator
-- (KEYS[#KEYS]).
-- Rate limit: a token bucket in KEYS[13] on Redis's clock, refilled at ARGV[14] a second up to
-- ARGV[15]; a claim takes at most the whole tokens there are and spends one per copy. With none,
-- the task ends and the backend stays in KEYS[6] until the next token, as it does while an
-- ordered backend's head waits (no work per waiting copy, and none per copy accepted meanwhile).
-- Ordered: the backend's copies stay in KEYS[1] at their accept score (Redis TIME at accept, in
-- microseconds, so two accepts never tie) while claimed; one is claimed at a time, the lowest
-- score, only while nothing is in flight and the hold has passed. A failed attempt keeps its
-- place and sets the hold to its retry time: the copies behind it wait until it is delivered
-- or dead-lettered; KEYS[7] says so in 'blocked:<route> <url>' ('<id> <since s>').
--
-- Returns {senders granted, due copies left, stale outcomes, Celery queue length, ended 0/1,
--          dead-lettered ids (table), auto-paused now 0/1,
--          then per claimed copy: id, generation, attempt, t0, route}.
-- include: quota
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local url, token = ARGV[1], ARGV[2]
local want, share, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local lease, hold, max_age = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local min_delay, max_delay, seed = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local rate, bucket, ordered = tonumber(ARGV[14]), tonumber(ARGV[15]), ARGV[16] == '1'
local delivered, errors, buried = {}, {}, {}
local blocked, unblocked = {}, {}
local TRACE_MS = 5000  -- see the 'd' marker below; longer than the intake's look can take

-- Commands over many members take them in chunks: Lua's unpack has a limit, and one call for
-- a batch costs far less than a call per copy.
local CHUNK = 1000
local function each(cmd, key, items, width)
  local step = CHUNK * width
  for s = 1, #items, step do
    redis.call(cmd, key, unpack(items, s, math.min(s + step - 1, #items)))
  end
end
local function fetch(cmd, key, ids)
  local out = {}
  for s = 1, #ids, CHUNK do
    local got = redis.call(cmd, key, unpack(ids, s, math.min(s + CHUNK - 1, #ids)))
    for j = 1, #ids - s + 1 do
      if j > CHUNK then break end
      out[s + j - 1] = got[j]
    end
  end
  return out
end

local function parse(v)
  local g, a, t0, route = string.match(v, '^(%d+) (%d+) (%d+) (.*)$')
  return tonumber(g), tonumber(a), tonumber(t0), route
end

local function bury(did, g, a, t0, route, reason, size)
  redis.call('HDEL', KEYS[3], did)
  redis.call('ZREM', KEYS[1], did)
  redis.call('ZADD', KEYS[8], now, did)
  redis.call('HSET', KEYS[9], did, cjson.encode({url, route, g, a, t0, reason, size or -1}))
  redis.call('HINCRBY', KEYS[11], route .. ' ' .. url, 1)
  errors[route] = reason
  if ordered then unblocked[route] = true end
  table.insert(buried, did)
end

local function retry(did, g, a, t0, route, delay, reason, size)
  local due = now + delay
  if due - t0 > max_age then
    bury(did, g, a, t0, route, reason, size)
  elseif ordered then
    -- keeps its place at the head (NX: a copy claimed before the backend became ordered
    -- has none, and goes to the back rather than get lost)
    redis.call('ZADD', KEYS[1], 'NX', now, did)
    redis.call('HSET', KEYS[13], 'hold', due, 'head', did)
    errors[route] = reason
    blocked[route] = did
  else
    redis.call('ZADD', KEYS[1], due, did)
    errors[route] = reason
  end
end

-- 1. the outcomes of the batch this token sent
local stale, reqkey = 0, 13
local m = tonumber(ARGV[17])
local dids = {}
for k = 1, m do dids[k] = ARGV[18 + 6 * (k - 1)] end
local vals = fetch('HMGET', KEYS[3], dids)
local leased = fetch('ZMSCORE', KEYS[2], dids)
local settled, done = {}, {}
local i = 18
for k = 1, m do
  local did, gen, kind = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local delay, reason, size = tonumber(ARGV[i + 3]), ARGV[i + 4], tonumber(ARGV[i + 5])
  i = i + 6
  if kind == 'd' then reqkey = reqkey + 1 end
  local v = vals[k]
  local g, a, t0, route
  if v then g, a, t0, route = parse(v) end
  if not v or g ~= gen or not leased[k] then
    stale = stale + 1
  else
    table.insert(settled, did)
    if kind == 'd' then
      table.insert(done, did)
      local q = redis.call('HGET', KEYS[reqkey], 'q')
      local last = redis.call('HINCRBY', KEYS[reqkey], 'n', -1) <= 0
      free(q, last)
      if last then
        -- The request's last copy: delete it, but for the first seconds after acceptance leave
        -- a marker in its place, so the intake's look after a lost reply (resolve.lua) still
        -- finds it stored.
        local left = TRACE_MS - (now - t0)
        if left > 0 then redis.call('SET', KEYS[reqkey], 'd', 'PX', left)
        else redis.call('DEL', KEYS[reqkey]) end
      end
      delivered[route] = (delivered[route] or 0) + 1
      if ordered then unblocked[route] = true end
    elseif kind == 'u' then
      redis.call('HSET', KEYS[3], did, g .. ' ' .. (a - 1) .. ' ' .. t0 .. ' ' .. route)
      if ordered then redis.call('ZADD', KEYS[1], 'NX', now, did)
      else redis.call('ZADD', KEYS[1], now, did) end
    elseif kind == 'r' then
      retry(did, g, a, t0, route, delay, reason, size)
    else
      bury(did, g, a, t0, route, reason, size)
    end
  end
end
each('ZREM', KEYS[2], settled, 1)
each('HDEL', KEYS[3], done, 1)
if ordered then each('ZREM', KEYS[1], done, 1) end
release(KEYS[12])
for k = 1, tonumber(ARGV[3]) do redis.call('ZREM', KEYS[4], token .. ':' .. k) end

-- 2. leases that ran out: their attempts never reported back
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 256)
for _, did in ipairs(expired) do
  redis.call('ZREM', KEYS[2], did)
  local v = redis.call('HGET', KEYS[3], did)
  if v then
    local g, a, t0, route = parse(v)
    seed = (seed * 1103515245 + 12345) % 2147483648
    local base = math.min(min_delay * 2 ^ math.min(math.max(a - 1, 0), 40), max_delay)
    local lo, hi = math.max(min_delay, base / 2), math.min(max_delay, base * 1.5)
    retry(did, g, a, t0, route, math.floor(lo + (hi - lo) * seed / 2147483648), 'LeaseExpired')
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)

-- 2b. pause: asked for, or (--auto-pause-after) no delivery for that long while failing
local PAUSED, FAILING = KEYS[#KEYS - 2], KEYS[#KEYS - 1]
local autopause, autopaused, paused = tonumber(ARGV[#ARGV]), 0, false
if autopause > 0 then
  if next(delivered) then
    redis.call('HDEL', FAILING, url)
  elseif next(errors) then
    redis.call('HSETNX', FAILING, url, now)
    local failing = tonumber(redis.call('HGET', FAILING, url))
    if now - failing >= autopause and redis.call('HEXISTS', PAUSED, url) == 0 then
      local routes, reason = {}, ''
      for route, why in pairs(errors) do table.insert(routes, route); reason = why end
      table.sort(routes)
      local why = 'no delivery for ' .. math.floor((now - failing) / 1000) .. ' s; last error: '
        .. reason
      redis.call('HSET', PAUSED, url, cjson.encode({since = now, by = 'auto', reason = why}))
      redis.call('RPUSH', KEYS[#KEYS], cjson.encode({url = url, routes = routes, since = now,
                                                      reason = why}))
      redis.call('LTRIM', KEYS[#KEYS], -1000, -1)
      autopaused = 1
    end
  end
end
if want > 0 and redis.call('HEXISTS', PAUSED, url) == 1 then want, paused = 0, true end

-- 3. claim the next batch, oldest due first, with sender slots up to the cap; a task that
-- has just sent a batch yields when other tasks wait for a process (fairness: one batch)
local granted, claimed = 0, {}
if want > 0 and tonumber(ARGV[3]) > 0 and redis.call('LLEN', KEYS[10]) > 0 then want = 0 end
-- waitfor: ms before which the policy lets nothing be claimed (the task ends until then)
local waitfor, tokens
if want > 0 and ordered then
  local inflight = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local hold = tonumber(redis.call('HGET', KEYS[13], 'hold') or 0)
  if inflight[2] then waitfor = tonumber(inflight[2])
  elseif hold > now then waitfor = hold
  else want = 1 end
  if waitfor then want = 0 end
end
if want > 0 and rate > 0 then
  local tk = redis.call('HMGET', KEYS[13], 'k', 'ts')
  tokens = tonumber(tk[1] or bucket)
  tokens = math.min(bucket, tokens + math.max(0, now - tonumber(tk[2] or now)) * rate / 1000)
  if math.floor(tokens) < want then want = math.floor(tokens) end
  if want == 0 then
    waitfor = now + math.ceil((1 - tokens) * 1000 / rate)
    tokens = nil  -- nothing spent, nothing to write
  end
end
if want > 0 then
  granted = share
  if cap > 0 then granted = math.min(share, cap - redis.call('ZCARD', KEYS[4])) end
  if granted > 0 then
    local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, want)
    local states = fetch('HMGET', KEYS[3], ids)
    local taken, gone, updates, leases = {}, {}, {}, {}
    for j, did in ipairs(ids) do
      local v = states[j]
      if not v then
        table.insert(taken, did)
        table.insert(gone, did)
      else
        local g, a, t0, route = parse(v)
        if now - t0 > max_age then
          bury(did, g, a, t0, route, 'MaxRetryAgeExceeded')
        else
          g, a = g + 1, a + 1
          table.insert(taken, did)
          for _, x in ipairs({did, g .. ' ' .. a .. ' ' .. t0 .. ' ' .. route}) do
            table.insert(updates, x)
          end
          for _, x in ipairs({now + lease, did}) do table.insert(leases, x) end
          for _, x in ipairs({did, g, a, t0, route}) do table.insert(claimed, x) end
        end
      end
    end
    -- an ordered backend's claimed head keeps its place (and score) in the ready queue
    if ordered then each('ZREM', KEYS[1], gone, 1) else each('ZREM', KEYS[1], taken, 1) end
    each('HSET', KEYS[3], updates, 2)
    each('ZADD', KEYS[2], leases, 2)
    granted = math.min(granted, #claimed / 5)  -- no slot for a copy it does not have
    for k = 1, granted do redis.call('ZADD', KEYS[4], now + lease, token .. ':' .. k) end
  end
end
if tokens then
  redis.call('HSET', KEYS[13], 'k', tokens - #claimed / 5, 'ts', now)
end

-- 4. keep the ownership while the task goes on; else hand the backend back to the dispatcher
local ended = 0
if #claimed == 0 and not (want > 0 and ARGV[13] == '1') then
  ended = 1
  local nxt
  for _, key in ipairs({KEYS[1], KEYS[2]}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] and (not nxt or tonumber(first[2]) < nxt) then nxt = tonumber(first[2]) end
  end
  -- every slot taken by other tasks: nothing to do before one frees (a running task that
  -- ends sooner makes the backend due itself; a dead one's slots lapse with their lease)
  if nxt and cap > 0 and redis.call('ZCARD', KEYS[4]) >= cap then
    local slot = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    nxt = math.max(nxt, tonumber(slot[2]))
  end
  if nxt and waitfor and not paused then
    -- a policy's wait (the next token, a failed head's retry): the backend stays owned until
    -- then, so copies accepted meanwhile do not make it due sooner (one dispatch per wait,
    -- not one per copy); when the ownership lapses the dispatcher makes it due. The wait is
    -- short: the dispatchers are woken to look again before their idle wait ends.
    redis.call('ZADD', KEYS[6], math.max(nxt, waitfor), url)
    redis.call('PUBLISH', 'hookfan:wake', '1')
  else
    redis.call('ZREM', KEYS[6], url)
    if nxt and not paused then
      redis.call('ZADD', KEYS[5], 'LT', nxt, url)
      if nxt <= now then redis.call('PUBLISH', 'hookfan:wake', '1') end
    end
  end
  -- nothing left to fail: the failure clock runs only while failing copies are pending
  if not nxt and autopause > 0 then redis.call('HDEL', FAILING, url) end
else
  -- renewed only when half the hold is gone: a lingering task's polls write nothing
  local owned = tonumber(redis.call('ZSCORE', KEYS[6], url) or 0)
  if owned - now < hold / 2 then redis.call('ZADD', KEYS[6], now + hold, url) end
end

-- 5. the backend's figures for RequestClone status
local secs = string.format('%.3f', now / 1000)
for route, n in pairs(delivered) do
  redis.call('HINCRBY', KEYS[7], 'delivered:' .. route .. ' ' .. url, n)
  redis.call('HSET', KEYS[7], 'last_delivered:' .. route .. ' ' .. url, secs)
end
for route, reason in pairs(errors) do
  redis.call('HSET', KEYS[7], 'last_error:' .. route .. ' ' .. url, reason)
end
for route in pairs(unblocked) do
  if not blocked[route] then redis.call('HDEL', KEYS[7], 'blocked:' .. route .. ' ' .. url) end
end
for route, did in pairs(blocked) do
  -- since: when this copy first blocked the queue (kept while the same copy keeps failing)
  local field = 'blocked:' .. route .. ' ' .. url
  local was = redis.call('HGET', KEYS[7], field)
  if not was or string.sub(was, 1, #did + 1) ~= did .. ' ' then
    redis.call('HSET', KEYS[7], field, did .. ' ' .. secs)
  end
end

local more = redis.call('ZCOUNT', KEYS[1], '-inf', now)
local out = {granted, more, stale, redis.call('LLEN', KEYS[10]), ended, buried, autopaused}
for _, x in ipairs(claimed) do table.insert(out, x) end
return out
