-- pause: stop claiming a backend's copies (hookfan backends pause). Its copies stay where they
-- are; nothing per copy is written now or while it stays paused.
--
-- KEYS[1] hookfan:paused   hash, backend url -> JSON {since ms, by, reason}
-- KEYS[2] hookfan:due      zset, backend url -> ms the dispatcher should act
--
-- ARGV[1] url, ARGV[2] who paused it ('cli', 'auto'), ARGV[3] why (free text, never content)
--
-- Returns 1 when paused now, 0 when it already was (the first pause's record is kept, so its
-- time still counts from the first pause). A task running the backend claims nothing more at
-- its next settle; attempts already in flight finish.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({since = now, by = ARGV[2], reason = ARGV[3]}))
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
