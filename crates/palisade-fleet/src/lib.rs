//! Fleet mode (issue 16): agents on every host ship their events to a central server over one
//! TLS WebSocket each, the server stores them (with each agent's high-water mark, in one
//! transaction), keeps the fleet ban log and pushes it to every agent at once; agents apply
//! fleet bans through their own responders with origin `fleet`.
//!
//! - [`tls`]: the server's self-signed certificate and the agent's fingerprint pinning.
//! - [`ident`]: tokens, identities, hashing.
//! - [`server`]: the listener (enrollment, authentication, ingest, ban push, revocation).
//! - [`agent`]: enrollment (`join`) and the agent's connection (shipper, ban applier,
//!   local-ban reporter, checksum).
//! - [`remote_analyze`]: `palisade analyze --agents`: the server's admin socket and
//!   request routing, the agent's bounded, low-priority analysis of its allowed logs.
//! - [`forward`]: the forwarder (`role = "forwarder"`): ships raw lines of its jails' files
//!   over the agent connection; [`forward_ingest`]: the server side (the server's filters and
//!   per-forwarder detection, a mark per stream stored with the events).
//! - [`cluster`]: several servers on one PostgreSQL (shared certificate, ban log wake-up,
//!   the correlator election and its event tail).
//! - [`admin`]: what `palisade fleet token add` / `agents` / `agents revoke` do, and the
//!   agents report the HTTP API can reuse.
//!
//! The daemon is reached through [`agent::AgentControl`] (implemented by the binary over the
//! daemon's control handle), so this crate never depends on the pipeline.

#![warn(missing_docs)]

pub mod admin;
pub mod agent;
pub mod backoff;
pub mod cluster;
pub mod forward;
pub mod forward_ingest;
pub mod ident;
pub mod ingest;
pub mod liveness;
pub mod overload;
pub mod remote_analyze;
pub mod server;
pub mod tls;

use palisade_core::Timestamp;
use std::time::Duration;

/// Everything that can go wrong in fleet mode.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Bad input from the operator.
    #[error("{0}")]
    Usage(String),
    /// Files.
    #[error("{0}")]
    Io(String),
    /// TLS set-up.
    #[error("TLS: {0}")]
    Tls(String),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] palisade_store::StoreError),
    /// The connection.
    #[error("{0}")]
    Net(String),
    /// The server said no.
    #[error("{0}")]
    Refused(String),
    /// The server is overloaded and asked to come back later (HTTP 503 + `Retry-After`).
    #[error("{url}: the server is busy; come back in {} s", after.as_secs())]
    Busy {
        /// The server's URL.
        url: String,
        /// Its `Retry-After`.
        after: Duration,
    },
}

/// Batches an agent may have in flight (the server's credit).
pub const CREDIT: u32 = 4;

/// How often the server pings each agent (clock offset, liveness). 15 s: at 10,000 idle
/// agents a ping/pong costs the server ~66 µs of CPU, so pings every 5 s alone kept it at
/// ~13 % of a 2-core machine (bench/fleet/RESULTS.md); a dead peer is still noticed within
/// 3 pings (45 s), and a closed connection at once.
pub const PING_EVERY: Duration = Duration::from_secs(15);

/// Clock offsets beyond this are flagged (`skewed`).
pub use palisade_store::fleet::SKEW_LIMIT_MS;
const _: () = assert!(
    palisade_store::fleet::CONNECTED_WITHIN_US == 3 * PING_EVERY.as_micros() as i64,
    "`fleet agents` counts an agent connected for 3 pings"
);

/// Wall-clock now.
pub fn now() -> Timestamp {
    use palisade_core::Clock;
    palisade_core::SystemClock.now()
}

/// The WebSocket settings of both sides: small buffers (the defaults are 128 KiB each per
/// connection), messages and frames at most 1 MiB.
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(palisade_proto::fleet::MAX_MESSAGE + 65536)
        .max_message_size(Some(palisade_proto::fleet::MAX_MESSAGE))
        .max_frame_size(Some(palisade_proto::fleet::MAX_MESSAGE))
}
