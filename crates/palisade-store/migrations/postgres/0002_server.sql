-- Palisade store, PostgreSQL schema version 2: what the HTTP API and dashboard need.

-- Events per UTC hour and jail, kept current by a statement-level trigger on `events` (one
-- grouped upsert per inserted batch), so statistics over days or months read a few hundred
-- rows instead of scanning millions of events. `hour` is the hour number (time / 3600 s).
CREATE TABLE event_hourly (
    hour      BIGINT NOT NULL,
    jail      TEXT   NOT NULL,
    events    BIGINT NOT NULL DEFAULT 0,
    failures  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, jail)
);

INSERT INTO event_hourly (hour, jail, events, failures)
    SELECT time / 3600000000, jail, COUNT(*), SUM(CASE WHEN failure THEN 1 ELSE 0 END)
    FROM events GROUP BY 1, 2;

CREATE FUNCTION palisade_events_hourly() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_hourly (hour, jail, events, failures)
        SELECT time / 3600000000, jail, COUNT(*), SUM(CASE WHEN failure THEN 1 ELSE 0 END)
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (hour, jail) DO UPDATE SET
        events = event_hourly.events + EXCLUDED.events,
        failures = event_hourly.failures + EXCLUDED.failures;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_hourly AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_events_hourly();

-- Per-address breakdown by jail (IP detail page) without touching event rows.
CREATE INDEX events_ip_jail ON events (ip, jail);

-- "Top offenders seen since T": walk addresses by failures, newest activity filtered.
CREATE INDEX ip_history_failures ON ip_history (failures);

-- Operator-managed allowlist entries (the dashboard's editor); the daemon merges them with
-- the configuration's [allowlist].
CREATE TABLE allowlist (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Canonical CIDR text, host bits cleared.
    net      TEXT   NOT NULL UNIQUE,
    comment  TEXT   NOT NULL DEFAULT '',
    created  BIGINT NOT NULL
);

-- Dashboard accounts. Passwords are argon2id PHC strings; never the password itself.
CREATE TABLE users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT   NOT NULL UNIQUE,
    password_hash  TEXT   NOT NULL,
    created        BIGINT NOT NULL,
    last_login     BIGINT
);

-- API tokens. Only the SHA-256 (hex) of the token is kept; the token is shown once.
CREATE TABLE api_tokens (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT   NOT NULL,
    scope       TEXT   NOT NULL CHECK (scope IN ('read', 'admin')),
    token_hash  TEXT   NOT NULL UNIQUE,
    created     BIGINT NOT NULL
);
