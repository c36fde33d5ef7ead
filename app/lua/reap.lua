-- Give back every job held by an owner whose lease has expired (or, with ARGV[2], by the calling
-- owner itself when it stops). Safe with many reapers at once: each run is atomic, and an owner
-- is reaped at most once because its active list and membership are removed in the same step.
-- KEYS: 1 workers, 2 wait:high, 3 wait:normal, 4 wait:low, 5 wake
-- ARGV: 1 key base (pw:{queue}:), 2 owner to release ('' = reap dead owners), 3 its token
-- Returns {jobs given back, owners reaped}.
local base = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local waits = {high = KEYS[2], normal = KEYS[3], low = KEYS[4]}
local owners
if ARGV[2] ~= '' then
  if redis.call('GET', base .. 'lease:' .. ARGV[2]) ~= ARGV[3] then
    return {0, 0}
  end
  owners = {ARGV[2]}
else
  owners = redis.call('SMEMBERS', KEYS[1])
end
local moved, reaped = 0, 0
for _, owner in ipairs(owners) do
  local lease = base .. 'lease:' .. owner
  if ARGV[2] ~= '' or redis.call('EXISTS', lease) == 0 then
    local active = base .. 'active:' .. owner
    local ids = redis.call('LRANGE', active, 0, -1)
    for i = #ids, 1, -1 do
      local id = ids[i]
      local key = base .. 'job:' .. id
      local priority = 'normal'
      if redis.call('EXISTS', key) == 1 then
        priority = redis.call('HGET', key, 'priority') or 'normal'
        if ARGV[2] ~= '' then
          redis.call('HINCRBY', key, 'attempts', -1)
        else
          redis.call('HINCRBY', key, 'recovered', 1)
        end
        redis.call('HSET', key, 'state', 'waiting', 'updatedAt', now, 'owner', '')
      end
      redis.call('RPUSH', waits[priority] or KEYS[3], id)
      moved = moved + 1
    end
    redis.call('DEL', active, lease)
    redis.call('SREM', KEYS[1], owner)
    reaped = reaped + 1
  end
end
if moved > 0 then
  redis.call('LPUSH', KEYS[5], '1')
  redis.call('LTRIM', KEYS[5], 0, 0)
end
return {moved, reaped}
