-- Settle a batch of an owner's jobs, fenced: nothing happens unless the owner's lease still holds
-- its token, the job's take counter still equals the one the owner got when it took the job, and
-- the id is still in its active list (a reaper may have given it back). Idempotent: sending the
-- same settlement again (its reply was lost) answers 2 and changes nothing.
-- KEYS: 1 active:<owner>, 2 lease:<owner>, 3 delayed, 4 dead, 5 completed, 6 failed,
--       7 wait:high, 8 wait:normal, 9 wait:low, 10 wake
-- ARGV: 1 job key prefix, 2 token, then 5 fields per item: id, take number (0 for an
--       element without a record), action, a, b
--   complete: a = result JSON
--   retry:    a = delay in ms, b = error JSON {"reason": ..., "error": ...}
--   dead:     a = dead-letter entry JSON, b = error JSON
--   requeue:  give back to the front of its wait list; the attempt is not counted
-- Returns one integer per item: 1 settled, 2 settled before (a resend), 0 fenced (ownership
-- lost: nothing changed).
local out = {}
local count = (#ARGV - 2) / 5
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  for i = 1, count do out[i] = 0 end
  return out
end
local prefix = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local waits = {high = KEYS[7], normal = KEYS[8], low = KEYS[9]}

local function retain(index, key, id, age, keep)
  age = tonumber(age) or 0
  keep = tonumber(keep) or -1
  if keep == 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('ZADD', index, now, id)
  if age > 0 then
    redis.call('EXPIRE', key, age)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now - age * 1000)
  end
  if keep > 0 then
    local excess = redis.call('ZCARD', index) - keep
    if excess > 0 then
      local old = redis.call('ZRANGE', index, 0, excess - 1)
      for _, oid in ipairs(old) do
        redis.call('DEL', prefix .. oid)
      end
      redis.call('ZREMRANGEBYRANK', index, 0, excess - 1)
    end
  end
end

for i = 1, count do
  local base = 2 + (i - 1) * 5
  local id, take = ARGV[base + 1], tonumber(ARGV[base + 2])
  local action, a, b = ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local state = 'apply'
  if take > 0 then
    local f = redis.call('HMGET', prefix .. id, 'takes', 'settled')
    if not f[1] then
      state = 'done'  -- the record is gone: it was settled and removed by retention
    elseif take <= (tonumber(f[2]) or 0) then
      state = 'done'
    elseif tonumber(f[1]) ~= take then
      state = 'fenced'
    end
  end
  if state == 'apply' and redis.call('LREM', KEYS[1], -1, id) == 0 then
    state = 'fenced'
  end
  if state == 'done' then
    out[i] = 2
  elseif state == 'fenced' then
    out[i] = 0
  else
    out[i] = 1
    local key = prefix .. id
    local known = redis.call('EXISTS', key) == 1
    if known then
      redis.call('HSET', key, 'settled', take)
    end
    if action == 'complete' then
      if known then
        redis.call('HSET', key, 'state', 'completed', 'result', a, 'finishedAt', now,
          'updatedAt', now, 'owner', '')
        local r = redis.call('HMGET', key, 'rocAge', 'rocCount')
        retain(KEYS[5], key, id, r[1], r[2])
      end
    elseif action == 'retry' then
      if known then
        local err = cjson.decode(b)
        local due = now + tonumber(a)
        redis.call('HSET', key, 'state', 'delayed', 'lastError', err.error,
          'reason', err.reason, 'dueAt', due, 'updatedAt', now, 'owner', '')
        redis.call('ZADD', KEYS[3], due, id)
      end
    elseif action == 'dead' then
      redis.call('LPUSH', KEYS[4], a)
      if known then
        local err = cjson.decode(b)
        redis.call('HSET', key, 'state', 'dead', 'lastError', err.error,
          'reason', err.reason, 'finishedAt', now, 'updatedAt', now, 'owner', '')
        local r = redis.call('HMGET', key, 'rofAge', 'rofCount')
        retain(KEYS[6], key, id, r[1], r[2])
      end
    elseif action == 'requeue' then
      local priority = 'normal'
      if known then
        priority = redis.call('HGET', key, 'priority') or 'normal'
        redis.call('HINCRBY', key, 'attempts', -1)
        redis.call('HSET', key, 'state', 'waiting', 'updatedAt', now, 'owner', '')
      end
      redis.call('RPUSH', waits[priority] or KEYS[8], id)
      redis.call('LPUSH', KEYS[10], '1')
      redis.call('LTRIM', KEYS[10], 0, 0)
    end
  end
end
return out
