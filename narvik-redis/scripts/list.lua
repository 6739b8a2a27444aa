-- One user's index: drops the entries of records the server has expired (by its own clock, as
-- it expired them), then returns the ids of the entries live at the caller's `now`.
-- KEYS: user index. ARGV: now ms.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(server_ms()))
return redis.call('ZRANGE', KEYS[1], '(' .. int(ARGV[1]), '+inf', 'BYSCORE')
