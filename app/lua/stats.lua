-- Jobs per state, read in one atomic step.
-- KEYS: 1 workers, 2 wait:high, 3 wait:normal, 4 wait:low, 5 delayed, 6 completed, 7 failed,
--       8 dead
-- ARGV: 1 key base (pw:{queue}:)
-- Returns {waiting, active, delayed, completed, failed, dead}.
local active = 0
for _, owner in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  active = active + redis.call('LLEN', ARGV[1] .. 'active:' .. owner)
end
return {
  redis.call('LLEN', KEYS[2]) + redis.call('LLEN', KEYS[3]) + redis.call('LLEN', KEYS[4]),
  active,
  redis.call('ZCARD', KEYS[5]),
  redis.call('ZCARD', KEYS[6]),
  redis.call('ZCARD', KEYS[7]),
  redis.call('LLEN', KEYS[8]),
}
