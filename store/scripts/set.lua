-- SetLinkedPod: ARGV = svc, pod, ttl.
-- Unconditional write. Reply {1, previous}: previous is the raw value that was
-- there (false when none); a corrupted one is overwritten, which repairs it.
local prev = redis.call('GET', KEYS[1])
link(ARGV[1], ARGV[2], ARGV[3])
return {1, prev}
