-- TrySetLinkedPod: ARGV = svc, pod, ttl.
-- Refuses only when another pod holds a persistent link (no expiry).
-- Reply {claimed, owner, previous}: claimed 1 or 0, owner the pod linked
-- afterwards, previous the pod linked before or -1.
local cur, prev = current()
if not prev then
  return {CORRUPT, cur}
end
if cur and prev ~= tonumber(ARGV[2]) and redis.call('PTTL', KEYS[1]) == -1 then
  return {0, prev, prev}
end
link(ARGV[1], ARGV[2], ARGV[3])
return {1, tonumber(ARGV[2]), prev}
