-- SetLinkedPodIfAbsent for a persistent link: ARGV = svc, pod.
-- (A temporary one needs no script: SET NX GET EX.)
-- Reply {1, raw}: raw is the value already there (nothing written), or false
-- when the link was absent and has been written.
local cur = redis.call('GET', KEYS[1])
if cur then
  return {1, cur}
end
link(ARGV[1], ARGV[2], '-1')
return {1, false}
