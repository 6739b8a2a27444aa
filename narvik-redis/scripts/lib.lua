-- Shared by every narvik script (prepended at compile time). Keys arrive in KEYS; user ids,
-- session ids and data arrive in ARGV, so no input is ever part of the source. The only key a
-- script names itself is a user index derived from the user id stored in a record
-- (`index_of`), and only the single-node scripts for calls that get the session id alone do so.

-- Record layout (see src/record.rs). Every save writes "n2": "n2", 16 hex expiry ms, 16 hex
-- creation ms, 8 hex user id length, 16 hex lifetime ms (0 = none), 16 hex data version, user
-- id, data JSON. Records written before are "n1": the same first four fields, then user id and
-- data JSON. Expiry and user id length sit at the same offsets in both.
local HEADER_LEN_N1 = 42
local HEADER_LEN = 74

-- A number of milliseconds as Redis expects an integer argument. (Lua would write large
-- numbers in exponent notation, which PEXPIREAT rejects.)
local function int(ms)
  return string.format('%d', tonumber(ms))
end

-- The server's own clock in ms. Used only to drop index entries of records the server has
-- already expired (it expires them by this clock); every decision that is the engine's or the
-- caller's takes its `now` as an argument.
local function server_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- A fixed-width field of lowercase hex digits as a number, or false when it is not one.
-- (tonumber alone would also take a sign, spaces, `0x` or capitals.)
local function hex_field(field)
  if string.find(field, '[^0-9a-f]') then
    return false
  end
  return tonumber(field, 16) or false
end

-- A stored time field (16 hex digits holding an i64's bits) in ms, or false when it is not hex.
-- Negative times (top bit set) are all long past: -1 stands for them.
local function time_ms(field)
  local value = hex_field(field)
  if value and string.sub(field, 1, 1) >= '8' then
    return -1
  end
  return value
end

-- The header of a record: its length (by version), the user id length, the expiry (ms) and
-- the header text (as long as the longer header allows), or false when the key is missing or
-- not a narvik record.
local function head_of(key)
  local head = redis.call('GETRANGE', key, 0, HEADER_LEN - 1)
  local version = string.sub(head, 1, 2)
  local len
  if version == 'n2' then
    len = HEADER_LEN
  elseif version == 'n1' then
    len = HEADER_LEN_N1
  else
    return false
  end
  if string.len(head) < len then
    return false
  end
  local length = hex_field(string.sub(head, 35, 42))
  local expires = time_ms(string.sub(head, 3, 18))
  if not length or not expires then
    return false
  end
  return len, length, expires, head
end

-- The user id and the expiry (ms) stored in a record, or false when the key is missing or not
-- a narvik record.
local function header(key)
  local len, length, expires = head_of(key)
  if not len then
    return false
  end
  return redis.call('GETRANGE', key, len, len + length - 1), expires
end

-- The user id stored in a record, or false (see `header`).
local function owner(key)
  local user = header(key)
  return user
end

-- Lowercase hex of every byte of `text`, as src/keys.rs writes user ids into key names.
local function hex(text)
  local out = {}
  for i = 1, string.len(text) do
    out[i] = string.format('%02x', string.byte(text, i))
  end
  return table.concat(out)
end

-- The user index of `user`, given the key prefix up to its hash tag (`PREFIX:u:{`).
local function index_of(index_prefix, user)
  return index_prefix .. hex(user) .. '}'
end

-- Keeps a key alive at least until `ms` (never shortens its life). A fresh key has no TTL
-- (PEXPIRETIME -1), so PEXPIREAT GT alone would not set it.
local function keep_until(key, ms)
  if redis.call('PEXPIRETIME', key) < tonumber(ms) then
    redis.call('PEXPIREAT', key, int(ms))
  end
end

-- Adds `member` to a sorted set scored by expiry, or moves it (`flag`: 'GT' only ever later,
-- 'LT' only ever earlier), and keeps the set alive until `alive_until` ms. With `prune` set,
-- first drops the entries whose records the server has already expired: an index entry is
-- never scored before its record's expiry, so an entry scored before the server's clock points
-- at a record that is gone. Returns 1 when the member is new.
local function track(zset, flag, score, member, prune, alive_until)
  if prune ~= '' then
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. int(server_ms()))
  end
  local added = redis.call('ZADD', zset, flag, int(score), member)
  keep_until(zset, alive_until)
  return added
end

-- Moves the expiry of an existing record: header field and key TTL together. `user` false:
-- any user. 1 done; 0 no such record, or expired at `now` (expired is as good as missing:
-- nothing is created or revived); -1 the record belongs to another user (nothing changed).
local function retime_record(key, ms, ms_hex, user, now)
  local stored, expires = header(key)
  if not stored then
    return 0
  end
  if user and stored ~= user then
    return -1
  end
  if expires <= tonumber(now) then
    return 0
  end
  redis.call('SETRANGE', key, 2, ms_hex)
  redis.call('PEXPIREAT', key, int(ms))
  return 1
end

-- Moves an existing index entry (XX: never adds one; `flag` '' exact, 'GT' only later) and
-- keeps the index alive that long.
local function retime_index(index, flag, ms, session_id)
  if flag == '' then
    redis.call('ZADD', index, 'XX', int(ms), session_id)
  else
    redis.call('ZADD', index, 'XX', flag, int(ms), session_id)
  end
  if redis.call('EXISTS', index) == 1 then
    keep_until(index, ms)
  end
end
