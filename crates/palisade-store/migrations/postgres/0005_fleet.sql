-- Fleet mode (issue 16). `host` on events: the fleet agent an event came from (NULL = this
-- host). On an agent, fleet_state keeps the shipper's epoch, acknowledged sequence and ban
-- cursor; on a server, fleet_agents/fleet_tokens/fleet_decisions hold identities (hashed
-- secrets only), enrollment tokens and the fleet ban log.
ALTER TABLE events ADD COLUMN host TEXT;

CREATE TABLE fleet_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE fleet_tokens (
    id         BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    uses_left  BIGINT NOT NULL,
    created    BIGINT NOT NULL,
    expires    BIGINT
);

CREATE TABLE fleet_agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    key_hash        TEXT NOT NULL,
    created         BIGINT NOT NULL,
    revoked         BIGINT NOT NULL DEFAULT 0,
    connected       BIGINT NOT NULL DEFAULT 0,
    last_seen       BIGINT,
    version         TEXT NOT NULL DEFAULT '',
    protocol        BIGINT NOT NULL DEFAULT 0,
    epoch           BIGINT NOT NULL DEFAULT 0,
    acked_seq       BIGINT NOT NULL DEFAULT 0,
    head_seq        BIGINT NOT NULL DEFAULT 0,
    events          BIGINT NOT NULL DEFAULT 0,
    gaps            BIGINT NOT NULL DEFAULT 0,
    clock_offset_ms BIGINT,
    ban_cursor      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX fleet_agents_name ON fleet_agents (name);

CREATE TABLE fleet_decisions (
    seq     BIGSERIAL PRIMARY KEY,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    jail    TEXT NOT NULL,
    reason  TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT,
    origin  TEXT,
    scope   TEXT
);
CREATE INDEX fleet_decisions_target ON fleet_decisions (target);

-- Decisions pushed by a fleet server have origin 'fleet' (it was 'remote').
ALTER TABLE decisions DROP CONSTRAINT decisions_origin_check;
UPDATE decisions SET origin = 'fleet' WHERE origin = 'remote';
ALTER TABLE decisions ADD CONSTRAINT decisions_origin_check
    CHECK (origin IN ('jail', 'recidive', 'manual', 'fail2ban', 'fleet'));
