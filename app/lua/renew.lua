-- Extend an owner's lease if it still holds its token: one call renews all of its jobs.
-- KEYS: 1 lease:<owner>
-- ARGV: 1 token, 2 leaseMs
-- Returns 1 renewed, 0 lost (the lease expired; a reaper may already have given its jobs back).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
