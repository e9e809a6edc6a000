//! Palisade's notifications: messages on decisions (e-mail, web hooks, JSON lines), the
//! periodic digest (`palisade report`, and its daily schedule in the daemon) and the AbuseIPDB
//! reporter. Secrets (SMTP passwords, API keys, web hook URLs) are read from the configuration
//! or from files ([`secret`]) and never logged.
//!
//! Depends on no pipeline crate: the daemon hands it decisions through
//! [`palisade_core::Observer`], the digest reads the store.
//!
//! Everything that runs inside the daemon (notifier, AbuseIPDB reporter) is a
//! [`palisade_core::Observer`] that only queues work for its own background thread, so the
//! engine is never blocked by a slow mail server or web hook.

#![warn(missing_docs)]

pub mod abuseipdb;
pub mod digest;
pub mod mail;
pub mod notify;
pub mod secret;

pub use notify::build_notifier;

use palisade_core::{Fanout, Observer};
use std::sync::Arc;

/// Problems building the daemon-side reporting observers.
#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    /// `[notify]`.
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
    /// `[abuseipdb]`.
    #[error(transparent)]
    AbuseIpDb(#[from] abuseipdb::AbuseError),
}

/// Everything this crate runs inside the daemon, as one observer: the notifier (`[notify]`)
/// and the AbuseIPDB reporter (`[abuseipdb]`). `None` when neither is configured.
pub fn build_observers(
    cfg: &palisade_config::Config,
) -> Result<Option<Arc<dyn Observer>>, ObserverError> {
    let mut v: Vec<Arc<dyn Observer>> = Vec::new();
    if let Some(n) = build_notifier(cfg)? {
        v.push(n);
    }
    if let Some(a) = abuseipdb::build_reporter(cfg)? {
        v.push(a);
    }
    Ok(Fanout::combine(v))
}
