-- GetLinkedPodIfPersist (read-only). Reply {1, raw}: raw is the link's value
-- when it has no expiry, false otherwise. K1 and its TTL are the truth, so a
-- directory entry left behind by another writer cannot resurrect a link.
local cur = redis.call('GET', KEYS[1])
if cur and redis.call('PTTL', KEYS[1]) == -1 then
  return {1, cur}
end
return {1, false}
