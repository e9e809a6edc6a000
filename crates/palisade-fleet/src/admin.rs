//! Operator actions on the server's store (work whether or not the server runs) and the
//! agents report shared by `palisade fleet agents` and, later, the HTTP API.

use crate::ident::{sha256_hex, Token};
use crate::{tls, FleetError, PING_EVERY, SKEW_LIMIT_MS};
use palisade_core::Timestamp;
use palisade_store::fleet::{FleetAgent, FleetStore};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Creates an enrollment token (`uses` enrollments, valid for `ttl`); creates the server
/// certificate when it does not exist yet. Returns the token text.
pub fn token_add(
    store: &mut dyn FleetStore,
    state_dir: &Path,
    uses: u32,
    ttl: Option<Duration>,
) -> Result<String, FleetError> {
    if uses == 0 {
        return Err(FleetError::Usage("--uses must be at least 1".into()));
    }
    let cert = tls::server_cert(state_dir)?;
    let token = Token::new(&cert.fingerprint);
    let now = crate::now();
    let expires = ttl.map(|d| Timestamp(now.0.saturating_add(d.as_micros() as i64)));
    store.token_add(&sha256_hex(token.secret.as_bytes()), uses, expires, now)?;
    Ok(token.encode())
}

/// One line of `palisade fleet agents`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AgentReport {
    /// Name.
    pub name: String,
    /// Id.
    pub id: String,
    /// Connected now.
    pub connected: bool,
    /// Revoked.
    pub revoked: bool,
    /// Last seen (RFC 3339), if ever.
    pub last_seen: Option<String>,
    /// Palisade version.
    pub version: String,
    /// Protocol version of its connection.
    pub protocol: u16,
    /// Events received.
    pub events: u64,
    /// Events it has that the server has not stored yet (as last reported).
    pub backlog: u64,
    /// Events it dropped (spool cap).
    pub gaps: u64,
    /// Its clock minus the server's (ms), if measured.
    pub clock_offset_ms: Option<i64>,
    /// |offset| over 30 s.
    pub skewed: bool,
    /// Fleet ban log cursor it applied.
    pub ban_cursor: u64,
}

impl AgentReport {
    /// From a stored agent at `now` (connected = the server says so and saw it recently).
    pub fn of(a: &FleetAgent, now: Timestamp) -> AgentReport {
        let recent = a
            .last_seen
            .is_some_and(|t| now.0 - t.0 <= 3 * PING_EVERY.as_micros() as i64);
        AgentReport {
            name: a.name.clone(),
            id: a.id.clone(),
            connected: a.connected && recent && !a.revoked,
            revoked: a.revoked,
            last_seen: a.last_seen.map(|t| t.to_string()),
            version: a.version.clone(),
            protocol: a.protocol,
            events: a.events,
            backlog: a.head_seq.saturating_sub(a.acked_seq),
            gaps: a.gaps,
            clock_offset_ms: a.clock_offset_ms,
            skewed: a.clock_offset_ms.is_some_and(|o| o.abs() > SKEW_LIMIT_MS),
            ban_cursor: a.ban_cursor,
        }
    }
}

/// Every agent (revoked ones included), by name.
pub fn agents(store: &mut dyn FleetStore) -> Result<Vec<AgentReport>, FleetError> {
    let now = crate::now();
    Ok(store
        .agents()?
        .iter()
        .map(|a| AgentReport::of(a, now))
        .collect())
}

/// Revokes an agent; the running server cuts its connection within a second.
pub fn revoke(store: &mut dyn FleetStore, name: &str) -> Result<(), FleetError> {
    if store.revoke(name)? {
        Ok(())
    } else {
        Err(FleetError::Usage(format!(
            "no enrolled agent named {name:?} (see `palisade fleet agents`)"
        )))
    }
}
