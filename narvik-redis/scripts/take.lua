-- Deletes a record and returns its user id (false when there was none), so the caller can
-- then remove the index entry. KEYS: record.
local stored = owner(KEYS[1])
redis.call('DEL', KEYS[1])
return stored
