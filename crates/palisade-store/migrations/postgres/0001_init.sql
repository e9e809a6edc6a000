-- Palisade store, PostgreSQL schema version 1.
-- Times are BIGINT microseconds since the Unix epoch (UTC), as in the SQLite backend, so both
-- backends share one row model. Applied inside one transaction by the migration runner, which
-- also records the version in schema_version.

-- One row per matched log line that reached the store.
CREATE TABLE events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time      BIGINT  NOT NULL,
    jail      TEXT    NOT NULL,
    filter    TEXT    NOT NULL,
    rule      TEXT    NOT NULL,
    -- Canonical text form (IPv4-mapped IPv6 stored as IPv4).
    ip        TEXT    NOT NULL,
    failure   BOOLEAN NOT NULL,
    username  TEXT,
    -- JSON object, captured field name -> value, in capture order (TEXT keeps the order).
    fields    TEXT    NOT NULL DEFAULT '{}',
    -- Kept for the first few events per address per hour only, NULL afterwards.
    evidence  TEXT
);

CREATE INDEX events_time ON events (time);
CREATE INDEX events_ip_time ON events (ip, time);
CREATE INDEX events_jail_time ON events (jail, time);

-- Enforcement decisions and their lifecycle.
CREATE TABLE decisions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Canonical CIDR text, host bits cleared (`1.2.3.4/32`, `2001:db8::/64`).
    target     TEXT    NOT NULL,
    jail       TEXT    NOT NULL,
    origin     TEXT    NOT NULL
               CHECK (origin IN ('jail', 'recidive', 'manual', 'fail2ban', 'remote')),
    reason     TEXT    NOT NULL,
    created    BIGINT  NOT NULL,
    -- NULL = permanent.
    expires    BIGINT,
    simulated  BOOLEAN NOT NULL,
    level      BIGINT  NOT NULL CHECK (level >= 0),
    status     TEXT    NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'expired', 'revoked')),
    -- Instant of the last status change (created, expiry sweep time, or revocation time).
    updated    BIGINT  NOT NULL
);

CREATE INDEX decisions_status_expires ON decisions (status, expires);
-- Exact-target lookups (ban_count) and containment lookups (all supernets of an address).
CREATE INDEX decisions_target ON decisions (target, created);
-- "Newest first" listings.
CREATE INDEX decisions_created ON decisions (created);

-- What Palisade remembers about one address.
CREATE TABLE ip_history (
    ip            TEXT    PRIMARY KEY,
    -- Sortable binary form: family byte (4 or 6) then the address bytes, so a network is a
    -- contiguous key range (used to credit network bans to the addresses inside them).
    ip_key        BYTEA   NOT NULL UNIQUE,
    first_seen    BIGINT  NOT NULL,
    last_seen     BIGINT  NOT NULL,
    failures      BIGINT  NOT NULL DEFAULT 0,
    times_banned  BIGINT  NOT NULL DEFAULT 0,
    -- Evidence sampling state: the hour (time / 3600 s) being sampled and how many events
    -- of that hour kept their evidence line. NULL hour = nothing sampled yet.
    sample_hour   BIGINT,
    sample_count  BIGINT  NOT NULL DEFAULT 0
);
