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
