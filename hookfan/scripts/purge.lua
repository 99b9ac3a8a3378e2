-- purge: delete a dead letter, and its request once no copy of it is left.
--
-- KEYS[1] hookfan:dl   KEYS[2] hookfan:dead   KEYS[3] hookfan:req:<request id>
-- ARGV[1] delivery id.  Returns 1 if purged, 0 if it is not a dead letter.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HINCRBY', KEYS[3], 'n', -1) <= 0 then redis.call('DEL', KEYS[3]) end
return 1
