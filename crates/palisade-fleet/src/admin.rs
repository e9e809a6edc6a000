//! Operator actions on the server's store (work whether or not the server runs) and the
//! agents report shared by `palisade fleet agents` and the HTTP API. Revoke and block are
//! implemented once in [`palisade_store::fleet::admin`] (below both this crate and the HTTP
//! server, which does not depend on this crate).

use crate::ident::{sha256_hex, Token};
use crate::FleetError;
use palisade_core::Timestamp;
use palisade_store::fleet::admin as store_admin;
use palisade_store::fleet::FleetStore;
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
    // On a shared store: the fleet's certificate, whichever server's host this runs on.
    let cert = crate::cluster::server_cert(state_dir, store)?;
    let token = Token::new(&cert.fingerprint);
    let now = crate::now();
    let expires = ttl.map(|d| Timestamp(now.0.saturating_add(d.as_micros() as i64)));
    store.token_add(&sha256_hex(token.secret.as_bytes()), uses, expires, now)?;
    Ok(token.encode())
}

pub use palisade_store::fleet::AgentReport;

/// Every agent (revoked ones included), by name.
pub fn agents(store: &mut dyn FleetStore) -> Result<Vec<AgentReport>, FleetError> {
    Ok(palisade_store::fleet::agent_reports(store, crate::now())?)
}

/// Revokes an agent; the running server cuts its connection within a second (the one
/// implementation, shared with the HTTP API: [`palisade_store::fleet::admin::revoke`]).
pub fn revoke(store: &mut dyn FleetStore, name: &str) -> Result<(), FleetError> {
    Ok(store_admin::revoke(store, name)?)
}

pub use palisade_store::fleet::admin::{net_is_bannable, BLOCK_FILE_MAX, BLOCK_MAX_ENTRIES};

/// Parses a reviewed block list: one address or CIDR a line, `#` comments and blank lines
/// ignored. `origin` names the file in errors (`FILE:LINE: …`); the first bad line fails the
/// whole list ([`palisade_store::fleet::admin::parse_block_list`], shared with the HTTP API).
pub fn parse_block_list(text: &str, origin: &str) -> Result<Vec<ipnet::IpNet>, FleetError> {
    Ok(store_admin::parse_block_list(text, origin)?)
}

/// Appends `targets` to the fleet ban log as bans scoped to `agents` (`None` = all agents),
/// in one transaction. Every name must be an enrolled agent not revoked (the unknown ones are
/// listed in the error, and nothing is appended). Returns how many entries were appended.
/// The one implementation, shared with the HTTP API: [`palisade_store::fleet::admin::block`].
pub fn block(
    store: &mut dyn FleetStore,
    targets: &[ipnet::IpNet],
    agents: Option<&[String]>,
    duration: Option<Duration>,
    reason: &str,
) -> Result<usize, FleetError> {
    Ok(store_admin::block(
        store,
        targets,
        agents,
        duration,
        reason,
        crate::now(),
    )?)
}

impl From<store_admin::AdminError> for FleetError {
    fn from(e: store_admin::AdminError) -> Self {
        match e {
            store_admin::AdminError::Usage(m) => FleetError::Usage(m),
            store_admin::AdminError::Store(e) => FleetError::Store(e),
        }
    }
}
