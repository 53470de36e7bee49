-- Shared by every link script (prepended before its body).
-- KEYS[1] is the link key (K1), KEYS[2] the uid's link directory (K2); both share a slot.

-- pod(v) returns the pod index held in v, or nil when v is not a canonical
-- decimal pod index in 0..2147483647 (a corrupted value never reads as a pod).
local function pod(v)
  if v and #v <= 10 and string.find(v, '^%d+$') then
    local n = tonumber(v)
    if n <= 2147483647 then
      return n
    end
  end
  return nil
end

-- current() reads KEYS[1]: its raw value (false when absent) and the pod it
-- holds: -1 when absent, nil when the value is corrupted.
local function current()
  local cur = redis.call('GET', KEYS[1])
  if not cur then
    return cur, -1
  end
  return cur, pod(cur)
end

-- link(svc, p, ttl) writes KEYS[1] = p. Persistent (ttl -1): no expiry and
-- K2[svc] = p. Temporary: expiry ttl seconds and K2[svc] removed.
-- K2 is written first: it is the only write that can fail (a K2 of the wrong
-- type), so a failure leaves nothing half-written.
local function link(svc, p, ttl)
  if ttl == '-1' then
    redis.call('HSET', KEYS[2], svc, p)
    redis.call('SET', KEYS[1], p)
  else
    redis.call('HDEL', KEYS[2], svc)
    redis.call('SET', KEYS[1], p, 'EX', ttl)
  end
end

-- Replies have a fixed shape: an array whose first element is a status.
-- {-2, raw} means KEYS[1] holds a corrupted value; nothing was written.
local CORRUPT = -2
