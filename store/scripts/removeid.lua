-- RemoveLinkedPodWithId: ARGV = svc, pod, ttl.
-- Like RemoveLinkedPod, only while the link still points at pod.
-- Reply {removed} or {CORRUPT, raw}.
local cur, c = current()
if not c then
  return {CORRUPT, cur}
end
if c ~= tonumber(ARGV[2]) then
  return {0}
end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[3] == '-1' then
  redis.call('DEL', KEYS[1])
else
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {1}
