-- Fleet mode (issue 16). `host` on events: the fleet agent an event came from (NULL = this
-- host). On an agent, fleet_state keeps the shipper's epoch, acknowledged sequence and ban
-- cursor; on a server, fleet_agents/fleet_tokens/fleet_decisions hold identities (hashed
-- secrets only), enrollment tokens and the fleet ban log.
ALTER TABLE events ADD COLUMN host TEXT;

CREATE TABLE fleet_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE fleet_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    uses_left  INTEGER NOT NULL,
    created    INTEGER NOT NULL,
    expires    INTEGER
) STRICT;

CREATE TABLE fleet_agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    key_hash        TEXT NOT NULL,
    created         INTEGER NOT NULL,
    revoked         INTEGER NOT NULL DEFAULT 0,
    connected       INTEGER NOT NULL DEFAULT 0,
    last_seen       INTEGER,
    version         TEXT NOT NULL DEFAULT '',
    protocol        INTEGER NOT NULL DEFAULT 0,
    epoch           INTEGER NOT NULL DEFAULT 0,
    acked_seq       INTEGER NOT NULL DEFAULT 0,
    head_seq        INTEGER NOT NULL DEFAULT 0,
    events          INTEGER NOT NULL DEFAULT 0,
    gaps            INTEGER NOT NULL DEFAULT 0,
    clock_offset_ms INTEGER,
    ban_cursor      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX fleet_agents_name ON fleet_agents (name);

CREATE TABLE fleet_decisions (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    jail    TEXT NOT NULL,
    reason  TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER,
    origin  TEXT,
    scope   TEXT
) STRICT;
CREATE INDEX fleet_decisions_target ON fleet_decisions (target);

-- Decisions pushed by a fleet server have origin 'fleet' (it was 'remote', never written by
-- an earlier version). SQLite cannot alter a CHECK constraint: the table is rebuilt.
CREATE TABLE decisions_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    target     TEXT    NOT NULL,
    jail       TEXT    NOT NULL,
    origin     TEXT    NOT NULL
               CHECK (origin IN ('jail', 'recidive', 'manual', 'fail2ban', 'fleet')),
    reason     TEXT    NOT NULL,
    created    INTEGER NOT NULL,
    expires    INTEGER,
    simulated  INTEGER NOT NULL CHECK (simulated IN (0, 1)),
    level      INTEGER NOT NULL CHECK (level >= 0),
    status     TEXT    NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'expired', 'revoked')),
    updated    INTEGER NOT NULL
) STRICT;
INSERT INTO decisions_new
    SELECT id, target, jail, CASE origin WHEN 'remote' THEN 'fleet' ELSE origin END,
           reason, created, expires, simulated, level, status, updated
    FROM decisions;
DROP TABLE decisions;
ALTER TABLE decisions_new RENAME TO decisions;
CREATE INDEX decisions_status_expires ON decisions (status, expires);
CREATE INDEX decisions_target ON decisions (target, created);
CREATE INDEX decisions_created ON decisions (created);
