-- GetLinkService (read-only). KEYS[1] is the uid's link directory (K2), not a
-- K1: the prelude's KEYS[2] is unused here.
-- K2 is only an index of the persistent links; K1 is the truth. Redis under
-- maxmemory evicts keys one by one, so K2 may list a service whose K1 was
-- evicted (or since rewritten as temporary, or moved to another pod by a
-- writer that does not keep K2). An entry is reported only when its K1 exists,
-- has no expiry and holds the same pod.
--
-- The K1 names are derived here, K1 = K2 .. svc, not declared: the services
-- are only known once K2 is read. This is what the Java framework's scripts
-- do too, and it holds on a cluster: K2's hash tag {<ns>:lk:<uid>} is also
-- K1's, so every K1 of the uid sits in K2's slot, on the node running the
-- script.
--
-- Nothing is written: an unconfirmed entry is left out, not deleted.
-- Reply {1, links, bad}, two flat arrays of field, value:
--   links: entries K1 confirms;
--   bad:   entries whose value is not a pod index or whose field is not a
--          valid service name (no K1 is read for them); the caller reports
--          them as corrupt.

-- service(s) mirrors the store's service name check: 1..128 bytes of
-- [A-Za-z0-9._-].
local function service(s)
  return #s >= 1 and #s <= 128 and string.find(s, '^[A-Za-z0-9%._%-]+$') ~= nil
end

local dir = KEYS[1]
local entries = redis.call('HGETALL', dir)
local links, bad = {}, {}
for i = 1, #entries, 2 do
  local svc, v = entries[i], entries[i + 1]
  local p = pod(v)
  if p == nil or not service(svc) then
    bad[#bad + 1] = svc
    bad[#bad + 1] = v
  else
    local k1 = dir .. svc
    -- pcall: a K1 of the wrong type confirms nothing, and must not fail the
    -- uid's other entries.
    local cur = redis.pcall('GET', k1)
    if type(cur) == 'string' and pod(cur) == p and redis.call('PTTL', k1) == -1 then
      links[#links + 1] = svc
      links[#links + 1] = v
    end
  end
end
return {1, links, bad}
