-- Palisade store, PostgreSQL schema version 3: per-address rollups for the IP detail page.
--
-- The page showed per-jail counts and a 30-day hourly timeline computed from the address's
-- event rows, which cost seconds for an address with tens of thousands of events. These two
-- tables, kept current by a statement-level trigger on `events` like `event_hourly`, answer
-- both from at most a few hundred rows. `hour` is the hour number (time / 3600 s).
CREATE TABLE ip_event_hourly (
    ip      TEXT   NOT NULL,
    hour    BIGINT NOT NULL,
    events  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (ip, hour)
);

CREATE TABLE ip_jail_events (
    ip      TEXT   NOT NULL,
    jail    TEXT   NOT NULL,
    events  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (ip, jail)
);

INSERT INTO ip_event_hourly (ip, hour, events)
    SELECT ip, time / 3600000000, COUNT(*) FROM events GROUP BY 1, 2;
INSERT INTO ip_jail_events (ip, jail, events)
    SELECT ip, jail, COUNT(*) FROM events GROUP BY 1, 2;

-- One grouped upsert per table and inserted batch, rows in key order so concurrent writers
-- lock them in the same order.
CREATE FUNCTION palisade_events_ip_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ip_event_hourly (ip, hour, events)
        SELECT ip, time / 3600000000, COUNT(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (ip, hour) DO UPDATE SET events = ip_event_hourly.events + EXCLUDED.events;
    INSERT INTO ip_jail_events (ip, jail, events)
        SELECT ip, jail, COUNT(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (ip, jail) DO UPDATE SET events = ip_jail_events.events + EXCLUDED.events;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_ip_rollup AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_events_ip_rollup();

-- An address's latest events (newest id first, `before_id` cursor) straight from the index,
-- instead of sorting all of the address's rows.
CREATE INDEX events_ip_id ON events (ip, id);

-- Replaced by ip_jail_events.
DROP INDEX events_ip_jail;
