-- Palisade store, SQLite schema version 1.
-- Times are i64 microseconds since the Unix epoch (UTC). Applied inside one transaction by
-- the migration runner, which also records the version in schema_version.

-- One row per matched log line that reached the store.
CREATE TABLE events (
    -- AUTOINCREMENT: ids are never reused, so `before_id` cursors stay valid after pruning.
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time      INTEGER NOT NULL,
    jail      TEXT    NOT NULL,
    filter    TEXT    NOT NULL,
    rule      TEXT    NOT NULL,
    -- Canonical text form (IPv4-mapped IPv6 stored as IPv4).
    ip        TEXT    NOT NULL,
    failure   INTEGER NOT NULL CHECK (failure IN (0, 1)),
    -- `user` is reserved in PostgreSQL; same name in both backends.
    username  TEXT,
    -- JSON object, captured field name -> value, in capture order.
    fields    TEXT    NOT NULL DEFAULT '{}',
    -- Kept for the first few events per address per hour only, NULL afterwards.
    evidence  TEXT
) STRICT;

CREATE INDEX events_time ON events (time);
CREATE INDEX events_ip_time ON events (ip, time);
CREATE INDEX events_jail_time ON events (jail, time);

-- Enforcement decisions and their lifecycle.
CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Canonical CIDR text, host bits cleared (`1.2.3.4/32`, `2001:db8::/64`).
    target     TEXT    NOT NULL,
    jail       TEXT    NOT NULL,
    origin     TEXT    NOT NULL
               CHECK (origin IN ('jail', 'recidive', 'manual', 'fail2ban', 'remote')),
    reason     TEXT    NOT NULL,
    created    INTEGER NOT NULL,
    -- NULL = permanent.
    expires    INTEGER,
    simulated  INTEGER NOT NULL CHECK (simulated IN (0, 1)),
    level      INTEGER NOT NULL CHECK (level >= 0),
    status     TEXT    NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'expired', 'revoked')),
    -- Instant of the last status change (created, expiry sweep time, or revocation time).
    updated    INTEGER NOT NULL
) STRICT;

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
    ip_key        BLOB    NOT NULL UNIQUE,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    times_banned  INTEGER NOT NULL DEFAULT 0,
    -- Evidence sampling state: the hour (time / 3600 s) being sampled and how many events
    -- of that hour kept their evidence line. NULL hour = nothing sampled yet.
    sample_hour   INTEGER,
    sample_count  INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID; -- keyed by ip: one b-tree lookup per history read/upsert
