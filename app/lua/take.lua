-- Take up to n jobs for one owner, atomically: each id moves from a wait list into the owner's
-- active list (RPOPLPUSH: works on every Redis version) in the same step that marks it active,
-- so a job is never held without an owner. Due delayed jobs are promoted first.
-- KEYS: 1 wait:high, 2 wait:normal, 3 wait:low, 4 active:<owner>, 5 wake, 6 lease:<owner>,
--       7 delayed
-- ARGV: 1 job key prefix, 2 owner, 3 token, 4 n, 5 leaseMs
-- Returns {status, ms until the next delayed job is due (-1: none), job fields...}; times come
-- from Redis (TIME), never from a client's clock.; status 'lost' when the lease is not ours.
-- Per job 10 fields: id, kind (job|raw), payload, attempts, maxAttempts, backoffMs,
-- backoffMaxMs, enqueuedAt, priority, take number (the fencing token of this take; never reused).
if redis.call('GET', KEYS[6]) ~= ARGV[3] then
  return {'lost', -1}
end
redis.call('PEXPIRE', KEYS[6], ARGV[5])
local prefix = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local waits = {high = KEYS[1], normal = KEYS[2], low = KEYS[3]}
local due = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local key = prefix .. id
  local priority = redis.call('HGET', key, 'priority')
  redis.call('LPUSH', waits[priority] or KEYS[2], id)
  redis.call('ZREM', KEYS[7], id)
  if priority then
    redis.call('HSET', key, 'state', 'waiting', 'updatedAt', now)
  end
end
local out = {'ok', -1}
local n = tonumber(ARGV[4])
local taken = 0
local empty = false
while taken < n do
  local id = redis.call('RPOPLPUSH', KEYS[1], KEYS[4])
    or redis.call('RPOPLPUSH', KEYS[2], KEYS[4])
    or redis.call('RPOPLPUSH', KEYS[3], KEYS[4])
  if not id then
    empty = true
    break
  end
  taken = taken + 1
  local key = prefix .. id
  if redis.call('EXISTS', key) == 1 then
    local attempts = redis.call('HINCRBY', key, 'attempts', 1)
    local takes = redis.call('HINCRBY', key, 'takes', 1)
    redis.call('HSET', key, 'state', 'active', 'owner', ARGV[2], 'startedAt', now,
      'updatedAt', now)
    local f = redis.call('HMGET', key, 'payload', 'maxAttempts', 'backoffMs', 'backoffMaxMs',
      'enqueuedAt', 'priority')
    out[#out + 1] = id
    out[#out + 1] = 'job'
    out[#out + 1] = f[1] or ''
    out[#out + 1] = attempts
    out[#out + 1] = f[2] or '1'
    out[#out + 1] = f[3] or '0'
    out[#out + 1] = f[4] or '0'
    out[#out + 1] = f[5] or '0'
    out[#out + 1] = f[6] or 'normal'
    out[#out + 1] = takes
  else
    -- an element pushed by hand, with no job record: the worker dead-letters it
    out[#out + 1] = id
    out[#out + 1] = 'raw'
    for _ = 1, 7 do out[#out + 1] = '' end
    out[#out + 1] = 0
  end
end
if empty then
  redis.call('DEL', KEYS[5])
end
local first = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
if first[2] then
  out[2] = math.max(0, tonumber(first[2]) - now)
end
return out
