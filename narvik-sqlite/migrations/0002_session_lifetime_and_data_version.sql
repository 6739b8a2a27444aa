-- narvik-sqlite migration 2: a session's own sliding lifetime and its data version.
-- Rows written before read as no lifetime of their own (the engine's) and data version 0.
ALTER TABLE {{table}} ADD COLUMN lifetime_ms INTEGER NULL;
ALTER TABLE {{table}} ADD COLUMN data_version INTEGER NOT NULL DEFAULT 0;
