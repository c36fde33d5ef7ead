-- Register an owner: its lease (token with a PX TTL) and its membership, in one step.
-- KEYS: 1 lease:<owner>, 2 workers
-- ARGV: 1 token, 2 leaseMs, 3 owner
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
