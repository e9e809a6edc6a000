//! Bans decided outside the detection engine: `palisade decisions add|delete`, `palisade
//! analyze --apply`, `palisade record` (fail2ban's `actionban`).
//!
//! This is the one place that decides how they take effect: **through the running daemon**
//! when its control socket answers (it records, enforces and remembers them like its own),
//! **else in the store**, applied at once through the responders when asked
//! ([`Enforce::Now`]); the daemon enforces whatever is in force when it next starts.
//!
//! Responders, without a daemon, are chosen exactly as the daemon routes decisions: the
//! responders of the enabled jail named like the decision's jail, else `[defaults]
//! responders` (manual bans have jail `manual`, `analyze` bans jail `analyze`: the defaults).

use crate::build::{build_responder, open_store, BuildError};
use crate::control::{self, unexpected, ControlError, Reply, Request};
use ipnet::IpNet;
use palisade_config::Config;
use palisade_core::{Allowlist, Clock, Decision, Origin, SystemClock};
use std::path::PathBuf;

/// Where a request took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The running daemon took it.
    Daemon,
    /// No daemon runs: recorded in the store (and enforced as asked).
    Store,
}

/// What to do, without a daemon, besides recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforce {
    /// Apply (or revoke) through the responders now, unless `[general] dry_run`.
    Now,
    /// Only record: the daemon enforces it at its next start (`palisade record`: fail2ban
    /// enforces its own bans).
    AtNextStart,
}

/// Outcome of [`ban_or_record`].
#[derive(Debug)]
pub struct Banned {
    /// Where the decisions went.
    pub via: Via,
    /// Decisions taken (ids set when recorded in the store).
    pub done: Vec<Decision>,
    /// Targets refused (allowlisted…), with why.
    pub refused: Vec<(IpNet, String)>,
}

/// Why a manual request failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// The control socket exists but the exchange failed.
    #[error("control socket {path}: {source}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The daemon answered with an error not tied to one target.
    #[error(transparent)]
    Daemon(#[from] ControlError),
    /// The store or a responder could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A store call failed.
    #[error("store: {0}")]
    Store(#[from] palisade_store::StoreError),
    /// A responder failed to apply or revoke.
    #[error("responder {name}: {message}")]
    Responder {
        /// Its name.
        name: String,
        /// What failed.
        message: String,
    },
}

fn ask(cfg: &Config, req: &Request) -> Result<Option<Result<Reply, ControlError>>, ManualError> {
    let path = PathBuf::from(&cfg.general.socket);
    control::call(&path, req).map_err(|source| ManualError::Socket { path, source })
}

/// The daemon's request for `d`: a `ban` for manual decisions (the daemon names them and
/// escalates them like its own), a `record` for decisions taken elsewhere (fail2ban).
fn request_for(d: &Decision) -> Request {
    if d.origin == Origin::Manual {
        Request::Ban {
            target: d.target,
            duration_secs: d.expires.map(|e| e.since(d.created).as_secs()),
            reason: d.reason.clone(),
        }
    } else {
        Request::Record {
            decision: d.clone(),
        }
    }
}

/// Bans `decisions` through the running daemon, else records them in the store and, with
/// [`Enforce::Now`], applies them through the responders (one batch per responder). Targets
/// refused (allowlist) are listed in [`Banned::refused`]; the others go ahead.
pub fn ban_or_record(
    cfg: &Config,
    decisions: Vec<Decision>,
    enforce: Enforce,
) -> Result<Banned, ManualError> {
    let mut out = Banned {
        via: Via::Daemon,
        done: Vec::new(),
        refused: Vec::new(),
    };
    let mut rest = decisions.into_iter();
    for d in rest.by_ref() {
        match ask(cfg, &request_for(&d))? {
            None => {
                // No daemon: this one and the rest go to the store.
                out.via = Via::Store;
                let all: Vec<Decision> = std::iter::once(d).chain(rest).collect();
                record_all(cfg, all, enforce, &mut out)?;
                return Ok(out);
            }
            Some(Ok(Reply::Banned(d) | Reply::Recorded(d))) => out.done.push(d),
            Some(Ok(other)) => return Err(unexpected(&other).into()),
            Some(Err(ControlError::Refused(why))) => out.refused.push((d.target, why)),
            Some(Err(e @ ControlError::Unavailable(_))) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn record_all(
    cfg: &Config,
    decisions: Vec<Decision>,
    enforce: Enforce,
    out: &mut Banned,
) -> Result<(), ManualError> {
    let allow = Allowlist::new(cfg.allowlist.parsed.iter().copied());
    let mut store = open_store(cfg)?;
    for d in decisions {
        match record_offline(store.as_mut(), &allow, &d) {
            Ok(id) => out.done.push(Decision { id, ..d }),
            Err(RecordError::Allowlisted(why) | RecordError::Duration(why)) => {
                out.refused.push((d.target, why))
            }
            Err(RecordError::Store(e)) => return Err(e.into()),
        }
    }
    if enforce == Enforce::Now && !cfg.general.dry_run {
        let live: Vec<Decision> = out.done.iter().filter(|d| !d.simulated).cloned().collect();
        enforce_offline(cfg, &live, true)?;
    }
    Ok(())
}

/// Lifts the bans of `target` through the running daemon, else revokes them in the store and
/// through the responders. Returns how many were lifted.
pub fn unban_or_revoke(cfg: &Config, target: IpNet) -> Result<(Via, u64), ManualError> {
    match ask(cfg, &Request::Unban { target })? {
        Some(Ok(Reply::Lifted(n))) => return Ok((Via::Daemon, n)),
        Some(Ok(other)) => return Err(unexpected(&other).into()),
        Some(Err(e)) => return Err(e.into()),
        None => {}
    }
    let mut store = open_store(cfg)?;
    let q = palisade_store::DecisionQuery {
        target: Some(target),
        active_at: Some(SystemClock.now()),
        limit: Some(10_000),
        ..Default::default()
    };
    let mut lifted = Vec::new();
    for s in store.decisions(&q)? {
        if let Some(d) = store.revoke_decision(s.decision.id)? {
            lifted.push(d);
        }
    }
    let live: Vec<Decision> = lifted.iter().filter(|d| !d.simulated).cloned().collect();
    enforce_offline(cfg, &live, false)?;
    Ok((Via::Store, lifted.len() as u64))
}

/// Why a decision was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The allowlist covers the target.
    #[error("{0}")]
    Allowlisted(String),
    /// The decision's length is out of bounds (zero-length).
    #[error("{0}")]
    Duration(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] palisade_store::StoreError),
}

/// Records a decision directly in the store (daemon not running), unless the allowlist covers
/// it. The daemon applies it at its next start.
pub fn record_offline(
    store: &mut dyn palisade_store::Store,
    allowlist: &Allowlist,
    d: &Decision,
) -> Result<i64, RecordError> {
    // Bounded as the daemon bounds a recorded decision: zero-length refused, over-long
    // made permanent.
    let mut d = d.clone();
    crate::daemon::bound_recorded(&mut d).map_err(RecordError::Duration)?;
    let d = &d;
    if allowlist.overlaps(&d.target) {
        return Err(RecordError::Allowlisted(format!(
            "{} is covered by the allowlist; not banned",
            d.target
        )));
    }
    Ok(store.insert_decision(d)?)
}

/// The responders a decision of `jail` goes to: as the daemon routes it.
pub fn responders_for(cfg: &Config, jail: &str) -> Vec<String> {
    cfg.jails
        .iter()
        .find(|j| j.enabled && j.name.get_ref() == jail)
        .map(|j| cfg.jail_responders(j))
        .unwrap_or_else(|| cfg.defaults.responders.clone())
}

/// Applies (or revokes) decisions through their responders without a daemon: each responder
/// is built once and gets its decisions in one batch.
fn enforce_offline(cfg: &Config, ds: &[Decision], apply: bool) -> Result<(), ManualError> {
    let mut per: Vec<(String, Vec<Decision>)> = Vec::new();
    for d in ds {
        for n in responders_for(cfg, &d.jail) {
            match per.iter_mut().find(|(x, _)| *x == n) {
                Some((_, v)) => v.push(d.clone()),
                None => per.push((n, vec![d.clone()])),
            }
        }
    }
    for (name, batch) in per {
        let sec = cfg.responder(&name).ok_or_else(|| ManualError::Responder {
            name: name.clone(),
            message: "not declared".into(),
        })?;
        let mut r = build_responder(&sec)?;
        let res = if apply {
            r.apply(&batch, SystemClock.now())
        } else {
            r.revoke(&batch)
        };
        res.map_err(|e| ManualError::Responder {
            name,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn offline_bans_go_where_the_daemon_routes_them() {
        let cfg = Config::parse(
            r#"
[defaults]
responders = ["b"]
[[responder]]
name = "a"
type = "log"
[[responder]]
name = "b"
type = "log"
[[jail]]
name = "sshd"
filter = "sshd"
files = ["/var/log/auth.log"]
responders = ["a"]
[[jail]]
name = "off"
enabled = false
filter = "sshd"
files = ["/var/log/auth.log"]
responders = ["a"]
"#,
            Path::new("/etc/palisade/t.toml"),
            &["sshd"],
        )
        .unwrap();
        assert_eq!(responders_for(&cfg, "sshd"), ["a"]);
        assert_eq!(responders_for(&cfg, "manual"), ["b"]);
        assert_eq!(responders_for(&cfg, "analyze"), ["b"]);
        // A disabled jail routes nothing in the daemon: the defaults, here too.
        assert_eq!(responders_for(&cfg, "off"), ["b"]);
    }

    #[test]
    fn manual_decisions_are_asked_as_bans_others_as_records() {
        let now = palisade_core::Timestamp::from_secs(1_700_000_000);
        let mut d = crate::daemon::manual_decision(
            "203.0.113.9/32".parse().unwrap(),
            Some(std::time::Duration::from_secs(3600)),
            "why",
            now,
        );
        assert_eq!(
            request_for(&d),
            Request::Ban {
                target: d.target,
                duration_secs: Some(3600),
                reason: "why".into()
            }
        );
        d.origin = Origin::Fail2ban;
        assert!(matches!(request_for(&d), Request::Record { .. }));
    }
}
