-- replay: put a dead letter back in its backend's ready queue, due now, with a fresh retry
-- age and attempt count (its generation is kept, so outcomes of older attempts stay stale).
--
-- KEYS[1] hookfan:dl   KEYS[2] hookfan:dead   KEYS[3] hookfan:q:<url>   KEYS[4] hookfan:c:<url>
-- KEYS[5] hookfan:due  KEYS[6] hookfan:owned  KEYS[7] hookfan:backends
-- ARGV[1] delivery id, ARGV[2] its backend url (read from KEYS[1] by the caller)
-- Returns 1 if replayed, 0 if it is not a dead letter (or its backend changed meanwhile).
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local d = cjson.decode(v)
if d[1] ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], string.format('%d 0 %d %s', d[3], now, d[2]))
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('SADD', KEYS[7], ARGV[2])
local owner = redis.call('ZSCORE', KEYS[6], ARGV[2])
if not owner or tonumber(owner) < now then
  if redis.call('ZADD', KEYS[5], 'LT', 'CH', now, ARGV[2]) == 1 then
    redis.call('PUBLISH', 'hookfan:wake', '1')
  end
end
return 1
