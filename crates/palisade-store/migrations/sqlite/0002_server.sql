-- Palisade store, SQLite schema version 2: what the HTTP API and dashboard need.

-- Events per UTC hour and jail, kept current by a trigger on `events`, so statistics over
-- days or months read a few hundred rows instead of scanning millions of events.
-- `hour` is the hour number (time / 3600 s).
CREATE TABLE event_hourly (
    hour      INTEGER NOT NULL,
    jail      TEXT    NOT NULL,
    events    INTEGER NOT NULL DEFAULT 0,
    failures  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, jail)
) STRICT, WITHOUT ROWID;

INSERT INTO event_hourly (hour, jail, events, failures)
    SELECT time / 3600000000, jail, COUNT(*), SUM(failure) FROM events GROUP BY 1, 2;

CREATE TRIGGER events_hourly AFTER INSERT ON events
BEGIN
    INSERT INTO event_hourly (hour, jail, events, failures)
    VALUES (NEW.time / 3600000000, NEW.jail, 1, NEW.failure)
    ON CONFLICT (hour, jail) DO UPDATE SET
        events = events + 1,
        failures = failures + excluded.failures;
END;

-- Per-address breakdown by jail (IP detail page) without touching event rows.
CREATE INDEX events_ip_jail ON events (ip, jail);

-- "Top offenders seen since T": walk addresses by failures, newest activity filtered.
CREATE INDEX ip_history_failures ON ip_history (failures);

-- Operator-managed allowlist entries (the dashboard's editor); the daemon merges them with
-- the configuration's [allowlist].
CREATE TABLE allowlist (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Canonical CIDR text, host bits cleared.
    net      TEXT    NOT NULL UNIQUE,
    comment  TEXT    NOT NULL DEFAULT '',
    created  INTEGER NOT NULL
) STRICT;

-- Dashboard accounts. Passwords are argon2id PHC strings; never the password itself.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    created        INTEGER NOT NULL,
    last_login     INTEGER
) STRICT;

-- API tokens. Only the SHA-256 (hex) of the token is kept; the token is shown once.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    scope       TEXT    NOT NULL CHECK (scope IN ('read', 'admin')),
    token_hash  TEXT    NOT NULL UNIQUE,
    created     INTEGER NOT NULL
) STRICT;
