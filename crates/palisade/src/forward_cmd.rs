//! The forwarder role of `palisade run` and the server's side of it (cargo feature `fleet`):
//! what the daemon runs of the configuration, the forwarder's jails, and the filters and
//! detection settings a fleet server applies to forwarded lines.

use anyhow::{Context, Result};
use palisade_config::{Config, FleetRole};
use palisade_fleet::forward::{ForwardJail, ForwardOptions, Forwarder};
use palisade_fleet::forward_ingest::ForwardSetup;

/// The configuration the daemon runs: a forwarder's jails are read by the forwarder, not
/// detected locally (the daemon keeps the store, the responders and the control socket for
/// the fleet bans); a server's jails without a source only filter forwarded lines.
pub fn daemon_config(cfg: &Config) -> Config {
    let mut c = cfg.clone();
    match cfg.fleet.as_ref().map(|f| f.role) {
        Some(FleetRole::Forwarder) => c.jails.clear(),
        Some(FleetRole::Server) => c
            .jails
            .retain(|j| !j.files.is_empty() || j.journal.is_some() || j.stdin),
        _ => {}
    }
    c
}

/// The server's filters (its enabled jails) and detection settings for forwarded lines.
pub fn forward_setup(cfg: &Config) -> Result<ForwardSetup> {
    let tz = palisade_pipeline::time_zone(cfg)?;
    let mut filters = Vec::new();
    for j in cfg.jails.iter().filter(|j| j.enabled) {
        filters.push((
            j.name.get_ref().clone(),
            palisade_pipeline::build_filter(cfg, j, &tz)?,
        ));
    }
    Ok(ForwardSetup {
        filters,
        engine: palisade_pipeline::build_engine_config(cfg),
    })
}

/// Starts a forwarder's sources (its enabled jails' files).
pub fn forwarder(cfg: &Config, from_start: bool) -> Result<Forwarder> {
    let jails = cfg
        .jails
        .iter()
        .filter(|j| j.enabled && !j.files.is_empty())
        .map(|j| ForwardJail {
            name: j.name.get_ref().clone(),
            patterns: j
                .files
                .iter()
                .map(|f| cfg.resolve(f).to_string_lossy().into_owned())
                .collect(),
        })
        .collect();
    Forwarder::start(ForwardOptions {
        jails,
        store_url: palisade_pipeline::store_url(cfg)?,
        from_start,
        max_line: cfg.general.max_line,
    })
    .context("starting the forwarder")
}
