-- Palisade store, SQLite schema version 3: per-address rollups for the IP detail page.
--
-- The page showed per-jail counts and a 30-day hourly timeline computed from the address's
-- event rows, which cost seconds for an address with tens of thousands of events. These two
-- tables answer both from at most a few hundred rows. The store's event writer keeps them
-- current with one upsert per address (and address-hour) of each batch — cheaper than a
-- per-row trigger when a burst repeats the same addresses. `hour` is the hour number
-- (time / 3600 s).
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

-- An address's latest events (newest id first, `before_id` cursor) straight from the index,
-- instead of sorting all of the address's rows.
CREATE INDEX events_ip_id ON events (ip, id);

-- Replaced by ip_jail_events.
DROP INDEX events_ip_jail;
