-- dispatch: take ownership of backends that have due copies, for the dispatcher to publish
-- one hookfan.deliver task each.
--
-- KEYS[1]  hookfan:due      zset, backend url -> ms the dispatcher should act
-- KEYS[2]  hookfan:owned    zset, backend url -> ms its task's ownership lapses
-- KEYS[2 + i]               hookfan:q:<url> of candidate i
-- KEYS[#KEYS]               hookfan:paused, hash, backend url -> why it is paused
-- ARGV[1]  hold ms (how long an ownership lasts without a task renewing it)
-- ARGV[1 + i]               candidate i's url (read from KEYS[1] just before the call)
--
-- Returns {now ms, ms until the next backend is due or an owner lapses (-1: none),
--          url, due copies, url, due copies, ...} for the backends now owned.
-- An owner whose hold ran out (its message was lost, its worker died) is made due again.
-- A paused backend is taken out of KEYS[1] instead of owned (resume.lua makes it due again);
-- while none is paused this costs one EXISTS per call.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[1])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, url in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], url)
  redis.call('ZADD', KEYS[1], 'LT', now, url)
end
local out = {now, -1}
local PAUSED = KEYS[#KEYS]
local any_paused = redis.call('EXISTS', PAUSED) == 1
for i = 2, #ARGV do
  local url = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[1], url)
  if due and any_paused and redis.call('HEXISTS', PAUSED, url) == 1 then
    redis.call('ZREM', KEYS[1], url)
  elseif due and tonumber(due) <= now then
    redis.call('ZREM', KEYS[1], url)
    redis.call('ZADD', KEYS[2], now + hold, url)
    table.insert(out, url)
    table.insert(out, redis.call('ZCOUNT', KEYS[1 + i], '-inf', now))
  end
end
local nxt = -1
for _, key in ipairs({KEYS[1], KEYS[2]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local wait = math.max(0, tonumber(first[2]) - now)
    if nxt < 0 or wait < nxt then nxt = wait end
  end
end
out[2] = nxt
return out
