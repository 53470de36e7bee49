-- GetServiceState (read-only): KEYS[1] = K3.
-- Reply {seconds, microseconds, {field, value, ...}}: the server's clock read in
-- the same script as the states, on the node that stamped them.
local t = redis.call('TIME')
return {t[1], t[2], redis.call('HGETALL', KEYS[1])}
