-- SetServiceState: KEYS[1] = K3; ARGV = pod, load, routing digit.
-- Stamps the value with the Redis server's clock, never the writer's.
-- Reply: the stamp in Unix milliseconds, as a string.
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '-' .. ms .. '-' .. ARGV[3])
return ms
