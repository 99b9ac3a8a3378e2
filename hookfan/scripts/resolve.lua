-- resolve: after the reply to an accept was lost, was the request stored? (the intake's look)
--
-- KEYS[1]  hookfan:req:<request id>   hash, the request, if its accept committed; the string
--                                     'd' for a few seconds once all its copies were delivered
-- KEYS[2]  hookfan:fence:<request id> string, set here when it was not stored
-- KEYS[3]  hookfan:dedupe:<digest>    the provider id's first request (KEYS[1] when off)
--
-- ARGV[1] fence ms.
--
-- Returns 'stored' when the accept committed. Otherwise it fences the request id, so that the
-- accept, if it is still on its way, stores nothing when it runs, and returns the first
-- request's '<request id>:<copies>' when the provider id names one (the accept found a
-- duplicate), else nil (not stored: the intake answers 503).
if redis.call('EXISTS', KEYS[1]) == 1 then return 'stored' end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
if KEYS[3] ~= KEYS[1] then
  local first = redis.call('GET', KEYS[3])
  if first then return first end
end
return false
