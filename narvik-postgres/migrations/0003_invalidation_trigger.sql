-- narvik-postgres migration 3: every change to a session that a cached copy must not outlive is
-- announced with NOTIFY on the table's own channel, whoever makes it (this store on any
-- instance, psql, a batch job), so that each instance's near cache can drop its copy.
-- {{table}}, {{invalidate_function}} (validated, double-quoted identifiers) and {{channel}} (a
-- string literal of letters, digits and `_ . #`) are replaced before this runs.
--
-- Statement-level triggers over transition tables, so a purge of 5,000 rows sends a few dozen
-- NOTIFYs, not 5,000. A payload is `*` (anything may have changed: TRUNCATE, or an id too long
-- for a payload) or ids joined by `,`; an id that is empty, is `*`, or holds `,` or `%` is sent
-- as `%` followed by the hex of its UTF-8 bytes. Payloads stay below Postgres' 8000-byte limit:
-- ids of at most 1000 bytes go in chunks cut at every 6900 bytes of a running total (a chunk
-- ends at most one item past its mark, so it is at most 7899 bytes), longer ones alone, and one
-- of 8000 bytes or more, which no payload can hold, as `*`.
--
-- Not announced: INSERTs (no cache holds a session that did not exist) and an UPDATE that moves
-- only `expires_at` later (a cached copy with the earlier expiry is only more careful). Any other
-- UPDATE, a shortened expiry included, is announced with the old id and, if it changed, the new.
--
-- A migration that adds a column must replace this function so that it compares the column too.
CREATE OR REPLACE FUNCTION {{invalidate_function}}() RETURNS trigger
LANGUAGE plpgsql AS $narvik$
DECLARE
    ids text[];
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify({{channel}}, '*');
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY(SELECT id FROM narvik_old);
    ELSE
        -- A FULL JOIN, because the planner cannot run one as a nested loop: this plan is
        -- cached after the first, one-row UPDATE, and a nested-loop anti-join reused for an
        -- UPDATE of 40,000 rows would compare every pair (minutes, measured).
        ids := ARRAY(
            SELECT coalesce(o.id, n.id)
            FROM narvik_old AS o FULL JOIN narvik_new AS n ON n.id = o.id
            WHERE o.id IS NULL OR n.id IS NULL
               OR n.expires_at < o.expires_at
               OR (n.user_id, n.created_at, n.data, n.lifetime_ms, n.data_version)
                  IS DISTINCT FROM (o.user_id, o.created_at, o.data, o.lifetime_ms, o.data_version));
    END IF;
    -- An extension, or a statement that matched nothing: no query to start.
    IF cardinality(ids) = 0 THEN
        RETURN NULL;
    END IF;
    -- One pass: a running total of bytes cuts the items of at most 1000 bytes into chunks (a
    -- chunk number is the total divided by 6900), a longer item is a chunk of its own (minus
    -- its total, which no other item has), and each chunk is one payload. One window and one
    -- grouping: this query is most of what the trigger costs a purge.
    FOR payload IN
        SELECT string_agg(CASE WHEN octet_length(item) < 8000 THEN item ELSE '*' END, ',')
        FROM (
            SELECT item, sum(octet_length(item) + 1) OVER (ROWS UNBOUNDED PRECEDING) AS total
            FROM (
                SELECT CASE WHEN id <> '' AND id <> '*'
                                 AND strpos(id, ',') = 0 AND strpos(id, '%') = 0
                            THEN id
                            ELSE '%' || encode(convert_to(id, 'UTF8'), 'hex') END AS item
                FROM unnest(ids) AS id
            ) AS items
        ) AS totals
        GROUP BY CASE WHEN octet_length(item) <= 1000 THEN total / 6900 ELSE -total END
    LOOP
        PERFORM pg_notify({{channel}}, payload);
    END LOOP;
    RETURN NULL;
END
$narvik$;

DROP TRIGGER IF EXISTS narvik_invalidate_delete ON {{table}};
CREATE TRIGGER narvik_invalidate_delete AFTER DELETE ON {{table}}
    REFERENCING OLD TABLE AS narvik_old
    FOR EACH STATEMENT EXECUTE FUNCTION {{invalidate_function}}();

DROP TRIGGER IF EXISTS narvik_invalidate_update ON {{table}};
CREATE TRIGGER narvik_invalidate_update AFTER UPDATE ON {{table}}
    REFERENCING OLD TABLE AS narvik_old NEW TABLE AS narvik_new
    FOR EACH STATEMENT EXECUTE FUNCTION {{invalidate_function}}();

DROP TRIGGER IF EXISTS narvik_invalidate_truncate ON {{table}};
CREATE TRIGGER narvik_invalidate_truncate AFTER TRUNCATE ON {{table}}
    FOR EACH STATEMENT EXECUTE FUNCTION {{invalidate_function}}();

-- ALWAYS: the triggers fire in sessions with `session_replication_role = replica` too (a
-- logical-replication apply worker writing into this table), whose changes a cache must not
-- outlive either.
ALTER TABLE {{table}}
    ENABLE ALWAYS TRIGGER narvik_invalidate_delete,
    ENABLE ALWAYS TRIGGER narvik_invalidate_update,
    ENABLE ALWAYS TRIGGER narvik_invalidate_truncate;
