-- ReplaceLinkedPod: ARGV = svc, pod, ttl, expected (-1: no link).
-- Compare-and-set. Reply {replaced, actual}: replaced 1 or 0, actual the pod
-- linked afterwards or -1.
local cur, c = current()
if not c then
  return {CORRUPT, cur}
end
if c ~= tonumber(ARGV[4]) then
  return {0, c}
end
link(ARGV[1], ARGV[2], ARGV[3])
return {1, tonumber(ARGV[2])}
