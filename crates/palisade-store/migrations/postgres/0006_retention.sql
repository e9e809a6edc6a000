-- Palisade store, PostgreSQL schema version 6: events partitioned by day, for retention by
-- dropping whole days; all-time event totals per address in `ip_history`.
--
-- Events are range-partitioned on `time` (µs since the epoch), one partition per UTC day
-- named `events_pYYYYMMDD`, plus a DEFAULT partition that catches a row whose day has no
-- partition (far-off timestamps, a day dropped by retention on another server while this one
-- still believed it existed), so an insert never fails for a missing partition. The store
-- creates partitions ahead and on demand (`palisade_events_partition`), which moves any rows
-- of that day out of the default partition first. Retention drops partitions older than the
-- cutoff and deletes the default partition's old rows. The totals (`ip_history`,
-- `ip_jail_events`, `event_hourly`) are maintained on insert only, so they stay exact when
-- old events go; the per-address hourly timeline (`ip_event_hourly`) loses the same hours.

-- Schema version 5 (fleet) adds this column; repeated here so both orders of applying the
-- two changes end with the same table.
ALTER TABLE events ADD COLUMN IF NOT EXISTS host TEXT;

-- All-time event count per address, next to failures and bans.
ALTER TABLE ip_history ADD COLUMN events BIGINT NOT NULL DEFAULT 0;
UPDATE ip_history h SET events = c.n
    FROM (SELECT ip, COUNT(*) AS n FROM events GROUP BY ip) c
    WHERE c.ip = h.ip;

-- Creates the partition of UTC day `day` (days since the epoch) unless it exists; rows of that
-- day in the default partition move into it. Serialised by an advisory lock, so servers
-- sharing the database can call it at once.
CREATE OR REPLACE FUNCTION palisade_events_partition(day BIGINT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    name TEXT := 'events_p' || to_char(DATE '1970-01-01' + day::INTEGER, 'YYYYMMDD');
    lo BIGINT := day * 86400000000;
    hi BIGINT := (day + 1) * 86400000000;
BEGIN
    PERFORM pg_advisory_xact_lock(8101114971203637618);
    IF to_regclass(name) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS)', name);
    -- Lets ATTACH skip the scan of the new table.
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (time >= %s AND time < %s)',
                   name, name || '_range', lo, hi);
    EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE time >= %s AND time < %s
                                   RETURNING *)
                    INSERT INTO %I SELECT * FROM moved', lo, hi, name);
    EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                   name, lo, hi);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_range');
    RETURN TRUE;
END
$$;

-- The conversion, unless `events` is partitioned already (a database converted before and
-- migrated again, as the storage story test does).
DO $convert$
DECLARE
    last_id BIGINT;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'events'::regclass) THEN
        RETURN;
    END IF;
    -- The old table steps aside: its indexes, key and identity go (their names are reused).
    ALTER TABLE events RENAME TO events_unpartitioned;
    DROP INDEX IF EXISTS events_time;
    DROP INDEX IF EXISTS events_ip_time;
    DROP INDEX IF EXISTS events_jail_time;
    DROP INDEX IF EXISTS events_ip_id;
    ALTER TABLE events_unpartitioned DROP CONSTRAINT events_pkey;
    SELECT GREATEST(
        (SELECT COALESCE(MAX(id), 0) FROM events_unpartitioned),
        (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM events_id_seq)
    ) INTO last_id;
    ALTER TABLE events_unpartitioned ALTER COLUMN id DROP IDENTITY;

    -- Ids come from a plain sequence (identity columns on partitioned tables need PostgreSQL 17);
    -- it continues where the old identity stopped, so ids are never reused.
    CREATE SEQUENCE events_id_seq AS BIGINT;
    PERFORM setval('events_id_seq', GREATEST(last_id, 1), last_id > 0);

    CREATE TABLE events (
        id        BIGINT  NOT NULL DEFAULT nextval('events_id_seq'),
        time      BIGINT  NOT NULL,
        jail      TEXT    NOT NULL,
        filter    TEXT    NOT NULL,
        rule      TEXT    NOT NULL,
        ip        TEXT    NOT NULL,
        failure   BOOLEAN NOT NULL,
        username  TEXT,
        fields    TEXT    NOT NULL DEFAULT '{}',
        evidence  TEXT,
        host      TEXT,
        -- A partitioned table's keys must include the partition column.
        PRIMARY KEY (id, time)
    ) PARTITION BY RANGE (time);
    ALTER SEQUENCE events_id_seq OWNED BY events.id;

    CREATE INDEX events_time ON events (time);
    CREATE INDEX events_ip_time ON events (ip, time);
    CREATE INDEX events_jail_time ON events (jail, time);
    CREATE INDEX events_ip_id ON events (ip, id);

    CREATE TABLE events_default PARTITION OF events DEFAULT;

    -- A partition for every day the old table holds, then the rows (with their ids). The
    -- rollups already count these rows: the triggers are created after the copy.
    PERFORM palisade_events_partition(d)
        FROM (SELECT DISTINCT floor(time / 86400000000.0)::BIGINT AS d FROM events_unpartitioned) days
        ORDER BY d;
    INSERT INTO events (id, time, jail, filter, rule, ip, failure, username, fields, evidence, host)
        SELECT id, time, jail, filter, rule, ip, failure, username, fields, evidence, host
        FROM events_unpartitioned;
    DROP TABLE events_unpartitioned;

    CREATE TRIGGER events_hourly AFTER INSERT ON events
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION palisade_events_hourly();
    CREATE TRIGGER events_ip_rollup AFTER INSERT ON events
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION palisade_events_ip_rollup();
END
$convert$;

-- The per-address hourly timeline is kept as long as the events (retention deletes its old
-- hours); this index finds them.
CREATE INDEX IF NOT EXISTS ip_event_hourly_hour ON ip_event_hourly (hour);
