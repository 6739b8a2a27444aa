-- narvik-mysql migration 1: the session table and its two indexes.
-- {{table}} is replaced by the validated, backticked table name (database-qualified when one
-- is configured) before this runs; nothing else is templated. Index names are per table.
--
-- Ids are VARBINARY: compared byte for byte, with no collation and no PAD SPACE rule (the
-- `_bin` collations of MariaDB and of MySQL 5.7 ignore trailing spaces, so 'a' = 'a ' there),
-- so ids differing by case, whitespace or Unicode normalisation stay distinct, and a NUL is
-- kept. The data is the JSON text exactly as written (not the JSON type: MariaDB's is
-- LONGTEXT anyway, MySQL 8's re-encodes numbers), utf8mb4 with a binary collation.
CREATE TABLE IF NOT EXISTS {{table}} (
    id          VARBINARY(255)  NOT NULL,
    user_id     VARBINARY(3072) NOT NULL,
    expires_at  DATETIME(3)     NOT NULL,
    created_at  DATETIME(3)     NOT NULL,
    data        LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (id),
    -- Per-user listing and deletion: a prefix index, so user ids up to 3072 bytes fit on any
    -- InnoDB page size; equality on the full value is checked on the rows the prefix finds.
    KEY user_id_idx (user_id(255)),
    -- The expired purge walks this index from the oldest expiry up to now.
    KEY expires_at_idx (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
