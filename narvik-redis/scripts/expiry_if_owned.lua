-- Cluster: the expiry (PEXPIRETIME, ms) of a record of this user, or 0 when there is none (gone,
-- or another user's). KEYS: record. ARGV: user id.
if owner(KEYS[1]) ~= ARGV[1] then
  return 0
end
return redis.call('PEXPIRETIME', KEYS[1])
