-- Palisade store, SQLite schema version 3: per-address rollups for the IP detail page.
--
-- The page showed per-jail counts and a 30-day hourly timeline computed from the address's
-- event rows, which cost seconds for an address with tens of thousands of events. These two
-- tables, kept current by a trigger on `events` like `event_hourly`, answer both from at
-- most a few hundred rows. `hour` is the hour number (time / 3600 s).
CREATE TABLE ip_event_hourly (
    ip      TEXT    NOT NULL,
    hour    INTEGER NOT NULL,
    events  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ip, hour)
) STRICT, WITHOUT ROWID;

CREATE TABLE ip_jail_events (
    ip      TEXT    NOT NULL,
    jail    TEXT    NOT NULL,
    events  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ip, jail)
) STRICT, WITHOUT ROWID;

INSERT INTO ip_event_hourly (ip, hour, events)
    SELECT ip, time / 3600000000, COUNT(*) FROM events GROUP BY 1, 2;
INSERT INTO ip_jail_events (ip, jail, events)
    SELECT ip, jail, COUNT(*) FROM events GROUP BY 1, 2;

CREATE TRIGGER events_ip_rollup AFTER INSERT ON events
BEGIN
    INSERT INTO ip_event_hourly (ip, hour, events)
    VALUES (NEW.ip, NEW.time / 3600000000, 1)
    ON CONFLICT (ip, hour) DO UPDATE SET events = events + 1;
    INSERT INTO ip_jail_events (ip, jail, events)
    VALUES (NEW.ip, NEW.jail, 1)
    ON CONFLICT (ip, jail) DO UPDATE SET events = events + 1;
END;

-- An address's latest events (newest id first, `before_id` cursor) straight from the index,
-- instead of sorting all of the address's rows.
CREATE INDEX events_ip_id ON events (ip, id);

-- Replaced by ip_jail_events.
DROP INDEX events_ip_jail;
