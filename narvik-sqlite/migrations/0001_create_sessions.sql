-- narvik-sqlite migration 1: the session table and its two indexes.
-- {{table}}, {{user_id_index}} and {{expires_at_index}} are replaced by validated, double-quoted
-- identifiers before this runs; nothing else is templated.
--
-- STRICT: SQLite refuses a value of another type instead of converting it (type affinity).
-- Times are milliseconds since the Unix epoch (UTC); data is the session's JSON text, kept
-- byte for byte.
CREATE TABLE IF NOT EXISTS {{table}} (
    id          TEXT    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    data        TEXT    NOT NULL
) STRICT;

-- Per-user listing and deletion touch only that user's rows.
CREATE INDEX IF NOT EXISTS {{user_id_index}} ON {{table}} (user_id);

-- The expired purge walks this index from the oldest expiry up to now.
CREATE INDEX IF NOT EXISTS {{expires_at_index}} ON {{table}} (expires_at);
