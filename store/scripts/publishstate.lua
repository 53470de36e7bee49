-- PublishServiceState: KEYS[1] = K3, KEYS[2] = K5 (same slot: K5 is K3's key
-- with a suffix outside the hash tag); ARGV = pod, load, the pod's own
-- routing digit.
-- Reads the operator's request K5[pod] and writes into K3 the more
-- restrictive of it and the pod's own state (Shutdown 0 > DenyNewCall 2 >
-- Ready 1), stamped with the Redis server's clock, never the writer's. A K5
-- value that is not a request, or a K5 that is not a hash, is ignored as if
-- absent: an operator's bad value never keeps a pod from publishing its own
-- state.
-- Reply: {stamp in Unix milliseconds, routing digit written, status, raw},
-- status 0: no request; 1: request raw applied; 2: raw is not a request;
-- 3: K5 is of the wrong type.
local rank = {['1'] = 0, ['2'] = 1, ['0'] = 2}
local routing = ARGV[3]
local status, raw = 0, ''
-- pcall: a K5 of the wrong type is an error reply here, not a failed script.
local req = redis.pcall('HGET', KEYS[2], ARGV[1])
if type(req) == 'table' then
  status = 3
elseif req then
  raw = req
  if req == '2' or req == '0' then
    status = 1
    if rank[req] > rank[routing] then
      routing = req
    end
  else
    status = 2
  end
end
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '-' .. ms .. '-' .. routing)
return {ms, routing, status, raw}
