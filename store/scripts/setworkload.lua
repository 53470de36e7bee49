-- SetWorkloadState: KEYS[1] = K4; ARGV = accepting, alive, ttl.
-- Writes <accepting>-<alive>-<updatedMillis> (server clock) with a TTL.
-- Reply: the stamp in Unix milliseconds, as a string.
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('SET', KEYS[1], ARGV[1] .. '-' .. ARGV[2] .. '-' .. ms, 'EX', ARGV[3])
return ms
