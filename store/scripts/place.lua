-- SetLinkedPodIfAbsent for a temporary link: ARGV = svc, pod, ttl.
-- Writes K1 = pod with the TTL only when no link exists, and then removes a
-- leftover K2[svc] (a temporary link is never in the directory; K2 may name
-- the service still after K1 was evicted or expired).
-- K1 is read only after the write (SET NX GET is a write): a caller that
-- asked Redis to track the keys this command reads (CLIENT CACHING YES) is
-- tracked from the value written or found on, and gets no invalidation for
-- its own write.
-- Reply {1, raw, pttl}: raw is the value already there (nothing written), or
-- false when the link was absent and has been written; pttl is K1's PTTL
-- afterwards (-1: a persistent link).
local old = redis.call('SET', KEYS[1], ARGV[2], 'NX', 'GET', 'EX', ARGV[3])
if not old then
  local r = redis.pcall('HDEL', KEYS[2], ARGV[1])
  if type(r) == 'table' and r.err then
    -- K2 is not a hash: undo the write, so nothing is left half-written.
    redis.call('DEL', KEYS[1])
    return redis.error_reply(r.err)
  end
elseif not pod(old) then
  return {CORRUPT, old}
end
return {1, old, redis.call('PTTL', KEYS[1])}
