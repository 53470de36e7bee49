-- RemoveLinkedPod: ARGV = svc, ttl.
-- ttl -1 deletes the link; ttl > 0 keeps it readable for ttl seconds as a
-- temporary link (grace period). K2[svc] is always removed, and only that
-- field: the uid's other persistent links keep no expiry.
-- Reply {existed}.
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[2] == '-1' then
  return {redis.call('DEL', KEYS[1])}
end
return {redis.call('EXPIRE', KEYS[1], ARGV[2])}
