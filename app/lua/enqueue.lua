-- Enqueue one job, idempotent on its id. Also used to re-drive a dead-letter entry.
-- KEYS: 1 job hash, 2 wait list of its priority, 3 wait:high, 4 wait:normal, 5 wait:low,
--       6 delayed, 7 wake, 8 dead
-- ARGV: 1 id, 2 payload, 3 priority, 4 maxAttempts, 5 backoffMs, 6 backoffMaxMs,
--       7 rocAge, 8 rocCount, 9 rofAge, 10 rofCount, 11 queueMax, 12 delayMs, 13 maxBytes,
--       14 dead-letter entry to remove ('' for a plain enqueue)
-- Times come from Redis (TIME), never from the caller's clock.
-- Returns {status, detail}: created|exists|full|too_large|gone
local job = KEYS[1]
local entry = ARGV[14]
if redis.call('EXISTS', job) == 1 then
  local state = redis.call('HGET', job, 'state')
  if entry == '' or (state ~= 'dead' and state ~= 'failed') then
    return {'exists', state or ''}
  end
end
local size = string.len(ARGV[2])
local maxBytes = tonumber(ARGV[13])
if maxBytes > 0 and size > maxBytes then
  return {'too_large', tostring(size)}
end
local queueMax = tonumber(ARGV[11])
if queueMax > 0 then
  local depth = redis.call('LLEN', KEYS[3]) + redis.call('LLEN', KEYS[4])
    + redis.call('LLEN', KEYS[5]) + redis.call('ZCARD', KEYS[6])
  if depth >= queueMax then
    return {'full', tostring(depth)}
  end
end
if entry ~= '' then
  if redis.call('LREM', KEYS[8], 1, entry) == 0 then
    return {'gone', ''}
  end
  redis.call('DEL', job)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay = tonumber(ARGV[12])
local state = 'waiting'
if delay > 0 then state = 'delayed' end
redis.call('HSET', job, 'id', ARGV[1], 'payload', ARGV[2], 'state', state,
  'priority', ARGV[3], 'attempts', 0, 'maxAttempts', ARGV[4], 'backoffMs', ARGV[5],
  'backoffMaxMs', ARGV[6], 'rocAge', ARGV[7], 'rocCount', ARGV[8], 'rofAge', ARGV[9],
  'rofCount', ARGV[10], 'enqueuedAt', now, 'updatedAt', now)
if delay > 0 then
  redis.call('HSET', job, 'dueAt', now + delay)
  redis.call('ZADD', KEYS[6], now + delay, ARGV[1])
else
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('LPUSH', KEYS[7], '1')
  redis.call('LTRIM', KEYS[7], 0, 0)
end
return {'created', state}
