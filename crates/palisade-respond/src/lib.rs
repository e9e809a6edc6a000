//! Responders apply and revoke [`Decision`]s.
//!
//! Contract shared by every responder:
//! - **idempotent**: applying a decision twice leaves the same state as applying it once;
//!   revoking something absent is not an error;
//! - **reconcile on start**: given the decisions in force, make the enforcement point match
//!   (add what is missing, drop what is stale) in as few operations as possible;
//! - **no shell**: external programs are run as argv vectors; every address is an [`IpNet`]
//!   rendered by Rust, never text from a log line.

use palisade_core::{Decision, Timestamp};

pub mod command;
pub mod log;

pub use command::{CommandResponder, CommandTemplate};
pub use log::LogResponder;

/// A responder failure. The daemon counts it and keeps going; the decision stays recorded.
#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    /// A program could not be started.
    #[error("{program}: cannot run: {source}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A program ran but failed.
    #[error("{program} exited with {status}: {stderr}")]
    Failed {
        /// argv\[0\].
        program: String,
        /// Exit status text.
        status: String,
        /// First bytes of its standard error.
        stderr: String,
    },
    /// The responder's configuration is unusable.
    #[error("invalid responder configuration: {0}")]
    Config(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Applies and revokes decisions at one enforcement point.
pub trait Responder: Send {
    /// Name as configured.
    fn name(&self) -> &str;
    /// Puts decisions in force (batch). Simulated decisions are never passed here.
    fn apply(&mut self, batch: &[Decision], now: Timestamp) -> Result<(), RespondError>;
    /// Lifts decisions (batch).
    fn revoke(&mut self, batch: &[Decision]) -> Result<(), RespondError>;
    /// Makes the enforcement point hold exactly `active` (called once at start).
    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<(), RespondError>;
    /// Whether the enforcement point expires bans by itself (nftables/ipset timeouts), so the
    /// daemon need not call `revoke` on expiry.
    fn expires_natively(&self) -> bool {
        false
    }
    /// Whether this decision expires by itself at the enforcement point (default:
    /// [`Responder::expires_natively`]); `false` makes the daemon revoke it when it ends
    /// (nftables: a ban too long for an element timeout is a permanent element).
    fn expires_natively_for(&self, d: &Decision) -> bool {
        let _ = d;
        self.expires_natively()
    }
}

pub mod firewall_util;
pub mod ipset;
pub mod nft;
pub mod ufw;

pub use firewall_util::FirewallStatus;
pub use ipset::{IpsetConfig, IpsetResponder};
pub use nft::{NftConfig, NftResponder, Protocol};
pub use ufw::{UfwConfig, UfwResponder};
