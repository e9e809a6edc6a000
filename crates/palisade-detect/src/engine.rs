//! [`Engine`]: jails, policy and the table of bans in force, for one host.

use crate::detector::{Detection, Detector};
use ahash::RandomState;
use ipnet::IpNet;
use palisade_core::{aggregate, target_of, Allowlist, Decision, Event, Origin, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Escalation for repeat offenders: the n-th ban (counting from 0) of a target lasts
/// `ban_time * factor^n`, at most `max`. Bans older than `window` are forgotten.
#[derive(Clone, Debug, PartialEq)]
pub struct Escalation {
    /// Multiplier per earlier ban (≥ 1).
    pub factor: f64,
    /// Upper bound of an escalated ban.
    pub max: Duration,
    /// How long a ban is remembered for escalation.
    pub window: Duration,
}

/// One jail's detection parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct JailParams {
    /// Jail name.
    pub name: Arc<str>,
    /// Failures that trigger a ban.
    pub max_retry: u32,
    /// Window for counting failures.
    pub find_time: Duration,
    /// Ban length (before escalation); `None` bans permanently.
    pub ban_time: Option<Duration>,
    /// Escalation for repeat offenders.
    pub escalation: Option<Escalation>,
    /// IPv6 offenders are counted and banned per network of this prefix length (128 = per
    /// address).
    pub v6_prefix: u8,
    /// Bound on tracked keys (see [`crate::BYTES_PER_KEY`]).
    pub max_keys: usize,
    /// Record decisions as simulated, never enforce them.
    pub dry_run: bool,
}

/// The recidive jail: targets banned `max_retry` times within `find_time` (by any jail) get
/// a long ban of `ban_time` that replaces the shorter one in force.
#[derive(Clone, Debug, PartialEq)]
pub struct RecidiveParams {
    /// Bans that trigger the recidive ban.
    pub max_retry: u32,
    /// Window over which bans are counted.
    pub find_time: Duration,
    /// Recidive ban length; `None` is permanent.
    pub ban_time: Option<Duration>,
}

/// Everything the engine needs.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// The jails, indexed by position.
    pub jails: Vec<JailParams>,
    /// The recidive jail, if enabled.
    pub recidive: Option<RecidiveParams>,
    /// Never banned.
    pub allowlist: Allowlist,
    /// Global dry-run (every decision simulated).
    pub dry_run: bool,
}

pub use palisade_core::UnbanReason;

/// What the engine asks the rest of the pipeline to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Put this decision in force (if not simulated) and record it.
    Ban(Decision),
    /// Lift this decision.
    Unban(Decision, UnbanReason),
}

/// Counters for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events whose address is allowlisted (never counted).
    pub allowlisted: u64,
    /// Failures ignored because the offender was already banned.
    pub while_banned: u64,
    /// Bans decided (all origins).
    pub bans: u64,
}

/// Escalation memory of one target.
#[derive(Clone, Copy, Debug)]
struct BanMemory {
    count: u32,
    last: Timestamp,
}

/// Bound on targets remembered for escalation.
const MAX_MEMORY: usize = 1_000_000;

/// Jails, policy and bans in force.
pub struct Engine {
    cfg: EngineConfig,
    detectors: Vec<Detector>,
    recidive: Option<Detector>,
    active: HashMap<IpNet, Decision, RandomState>,
    memory: HashMap<IpNet, BanMemory, RandomState>,
    stats: EngineStats,
}

impl Engine {
    /// Builds the engine.
    pub fn new(cfg: EngineConfig) -> Self {
        let detectors = cfg
            .jails
            .iter()
            .map(|j| Detector::new(j.max_retry, j.find_time, j.max_keys))
            .collect();
        let recidive = cfg
            .recidive
            .as_ref()
            .map(|r| Detector::new(r.max_retry, r.find_time, 1_000_000));
        Engine {
            cfg,
            detectors,
            recidive,
            active: HashMap::with_hasher(RandomState::new()),
            memory: HashMap::with_hasher(RandomState::new()),
            stats: EngineStats::default(),
        }
    }

    /// Applies a new configuration (reload) without losing state: bans in force, escalation
    /// memory and the counting state of jails that keep their name all survive. Bans the new
    /// allowlist covers are lifted (pushed to `out`).
    pub fn reconfigure(&mut self, cfg: EngineConfig, out: &mut Vec<Action>) {
        let mut old: HashMap<Arc<str>, Detector> = self
            .cfg
            .jails
            .iter()
            .map(|j| j.name.clone())
            .zip(std::mem::take(&mut self.detectors))
            .collect();
        self.detectors = cfg
            .jails
            .iter()
            .map(|j| match old.remove(&j.name) {
                Some(mut d) => {
                    d.set_params(j.max_retry, j.find_time, j.max_keys);
                    d
                }
                None => Detector::new(j.max_retry, j.find_time, j.max_keys),
            })
            .collect();
        match (&cfg.recidive, self.recidive.as_mut()) {
            (Some(r), Some(d)) => d.set_params(r.max_retry, r.find_time, 1_000_000),
            (Some(r), None) => {
                self.recidive = Some(Detector::new(r.max_retry, r.find_time, 1_000_000))
            }
            (None, _) => self.recidive = None,
        }
        let allow = cfg.allowlist.clone();
        self.cfg = cfg;
        self.set_allowlist(allow, out);
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Index of a jail by name.
    pub fn jail_index(&self, name: &str) -> Option<usize> {
        self.cfg.jails.iter().position(|j| &*j.name == name)
    }

    /// Loads the bans in force (from the store, at start) and the escalation memory
    /// (`(target, bans so far, last ban)`), so a restart keeps state.
    pub fn restore(
        &mut self,
        active: impl IntoIterator<Item = Decision>,
        memory: impl IntoIterator<Item = (IpNet, u32, Timestamp)>,
    ) {
        for d in active {
            self.active.insert(d.target, d);
        }
        for (t, count, last) in memory {
            self.memory.insert(t, BanMemory { count, last });
        }
    }

    /// Replaces the allowlist (reload). Bans in force that it now covers are lifted.
    pub fn set_allowlist(&mut self, allowlist: Allowlist, out: &mut Vec<Action>) {
        self.cfg.allowlist = allowlist;
        let lifted: Vec<IpNet> = self
            .active
            .keys()
            .filter(|t| self.cfg.allowlist.overlaps(t))
            .copied()
            .collect();
        for t in lifted {
            if let Some(d) = self.active.remove(&t) {
                out.push(Action::Unban(d, UnbanReason::Manual));
            }
        }
    }

    /// Counts one event of jail `jail`; pushes the resulting actions.
    pub fn observe(&mut self, jail: usize, ev: &Event, out: &mut Vec<Action>) {
        if !ev.failure {
            return;
        }
        if self.cfg.allowlist.contains(ev.ip) {
            self.stats.allowlisted += 1;
            return;
        }
        let Some(params) = self.cfg.jails.get(jail) else {
            return;
        };
        let mut key = aggregate(ev.ip, params.v6_prefix);
        if self.cfg.allowlist.overlaps(&key) {
            // Never let a network ban cover an allowlisted address: count this one alone.
            key = target_of(ev.ip);
        }
        if self.is_banned(&key, ev.time) {
            self.stats.while_banned += 1;
            return;
        }
        if let Some(det) = self.detectors[jail].observe(key, ev.time) {
            self.on_detection(jail, det, &ev.rule, out);
        }
    }

    fn is_banned(&self, key: &IpNet, at: Timestamp) -> bool {
        self.active.get(key).is_some_and(|d| d.active_at(at))
    }

    fn on_detection(&mut self, jail: usize, det: Detection, rule: &str, out: &mut Vec<Action>) {
        let p = &self.cfg.jails[jail];
        let level = self.level_of(&det.key, det.time, p.escalation.as_ref());
        let duration = p
            .ban_time
            .map(|b| escalate(b, level, p.escalation.as_ref()));
        let reason = format!(
            "{} failures in {} ({}, last: {})",
            det.failures,
            fmt_duration(p.find_time),
            p.name,
            rule
        );
        let d = Decision {
            id: 0,
            target: det.key,
            jail: p.name.to_string(),
            origin: Origin::Jail,
            reason,
            created: det.time,
            expires: duration.map(|d| det.time.plus(d)),
            simulated: self.cfg.dry_run || p.dry_run,
            level,
        };
        self.push_ban(d, out);
    }

    fn level_of(&self, key: &IpNet, now: Timestamp, esc: Option<&Escalation>) -> u32 {
        let Some(esc) = esc else { return 0 };
        match self.memory.get(key) {
            Some(m) if now.since(m.last) <= esc.window => m.count,
            _ => 0,
        }
    }

    fn push_ban(&mut self, d: Decision, out: &mut Vec<Action>) {
        let key = d.target;
        let at = d.created;
        if let Some(old) = self.active.remove(&key) {
            if old.active_at(at) {
                out.push(Action::Unban(old, UnbanReason::Replaced));
            }
        }
        let m = self
            .memory
            .entry(key)
            .or_insert(BanMemory { count: 0, last: at });
        m.count = m.count.saturating_add(1);
        m.last = at;
        if self.memory.len() > MAX_MEMORY {
            let cut = at.minus(Duration::from_secs(7 * 86400));
            self.memory.retain(|_, m| m.last > cut);
        }
        for det in &mut self.detectors {
            det.forget(&key);
        }
        let origin = d.origin;
        let simulated = d.simulated;
        self.active.insert(key, d.clone());
        self.stats.bans += 1;
        out.push(Action::Ban(d));
        if origin == Origin::Jail {
            self.feed_recidive(key, at, simulated, out);
        }
    }

    fn feed_recidive(&mut self, key: IpNet, at: Timestamp, simulated: bool, out: &mut Vec<Action>) {
        let (Some(det), Some(p)) = (self.recidive.as_mut(), self.cfg.recidive.as_ref()) else {
            return;
        };
        if let Some(hit) = det.observe(key, at) {
            let d = Decision {
                id: 0,
                target: key,
                jail: "recidive".into(),
                origin: Origin::Recidive,
                reason: format!(
                    "{} bans in {} (recidive)",
                    hit.failures,
                    fmt_duration(p.find_time)
                ),
                created: at,
                expires: p.ban_time.map(|b| at.plus(b)),
                simulated: simulated || self.cfg.dry_run,
                level: 0,
            };
            self.push_ban(d, out);
        }
    }

    /// An operator ban. Refused (returns `Err`) when the target touches the allowlist.
    pub fn manual_ban(
        &mut self,
        target: IpNet,
        duration: Option<Duration>,
        reason: &str,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) -> Result<Decision, String> {
        // `::ffff:192.0.2.0/120` is 192.0.2.0/24: checked and banned as IPv4.
        let target = palisade_core::canonical_net(target);
        if self.cfg.allowlist.overlaps(&target) {
            return Err(format!("{target} is covered by the allowlist; not banned"));
        }
        let d = Decision {
            id: 0,
            target,
            jail: "manual".into(),
            origin: Origin::Manual,
            reason: reason.to_string(),
            created: now,
            expires: duration.map(|d| now.plus(d)),
            simulated: self.cfg.dry_run,
            level: 0,
        };
        self.push_ban(d.clone(), out);
        Ok(d)
    }

    /// Records a ban decided elsewhere (fail2ban bridge, fleet server) as in force.
    pub fn adopt(&mut self, d: Decision, out: &mut Vec<Action>) -> Result<(), String> {
        if self.cfg.allowlist.overlaps(&d.target) {
            return Err(format!(
                "{} is covered by the allowlist; not banned",
                d.target
            ));
        }
        self.push_ban(d, out);
        Ok(())
    }

    /// Lifts every ban in force whose target equals `target` or contains it (or is contained
    /// in it); forgets counting state.
    pub fn unban(&mut self, target: &IpNet, out: &mut Vec<Action>) -> usize {
        let hits: Vec<IpNet> = self
            .active
            .keys()
            .filter(|k| *k == target || k.contains(target) || target.contains(*k))
            .copied()
            .collect();
        for k in &hits {
            if let Some(d) = self.active.remove(k) {
                out.push(Action::Unban(d, UnbanReason::Manual));
            }
            for det in &mut self.detectors {
                det.forget(k);
            }
        }
        hits.len()
    }

    /// Lifts bans whose time is over at `now`.
    pub fn expire(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        let over: Vec<IpNet> = self
            .active
            .iter()
            .filter(|(_, d)| !d.active_at(now))
            .map(|(k, _)| *k)
            .collect();
        for k in over {
            if let Some(d) = self.active.remove(&k) {
                out.push(Action::Unban(d, UnbanReason::Expired));
            }
        }
    }

    /// Bans in force (including simulated ones).
    pub fn active(&self) -> impl Iterator<Item = &Decision> {
        self.active.values()
    }

    /// The ban in force for exactly this target.
    pub fn active_for(&self, target: &IpNet) -> Option<&Decision> {
        self.active.get(target)
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Per-jail detector counters and tracked keys.
    pub fn jail_stats(&self) -> Vec<(Arc<str>, crate::DetectorStats, usize)> {
        self.cfg
            .jails
            .iter()
            .zip(&self.detectors)
            .map(|(j, d)| (j.name.clone(), d.stats(), d.tracked()))
            .collect()
    }
}

fn escalate(base: Duration, level: u32, esc: Option<&Escalation>) -> Duration {
    let Some(e) = esc else { return base };
    let f = e.factor.max(1.0).powi(level.min(64) as i32);
    let secs = (base.as_secs_f64() * f).min(e.max.as_secs_f64());
    Duration::from_secs_f64(secs.max(base.as_secs_f64().min(e.max.as_secs_f64())))
}

/// Formats a duration compactly (`10m`, `1h30m`, `1w`).
pub fn fmt_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [
        ("w", 604800),
        ("d", 86400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if s >= n {
            out.push_str(&format!("{}{}", s / n, unit));
            s %= n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ev(ip: &str, t: i64) -> Event {
        Event {
            time: Timestamp::from_secs(t),
            ip: ip.parse::<IpAddr>().unwrap(),
            filter: "sshd".into(),
            rule: "failed_password".into(),
            failure: true,
            user: None,
            fields: vec![],
            evidence: "".into(),
        }
    }

    fn jail(name: &str) -> JailParams {
        JailParams {
            name: name.into(),
            max_retry: 3,
            find_time: Duration::from_secs(600),
            ban_time: Some(Duration::from_secs(3600)),
            escalation: None,
            v6_prefix: 64,
            max_keys: 10_000,
            dry_run: false,
        }
    }

    fn bans(out: &[Action]) -> Vec<&Decision> {
        out.iter()
            .filter_map(|a| match a {
                Action::Ban(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bans_after_threshold_and_ignores_while_banned() {
        let mut e = Engine::new(EngineConfig {
            jails: vec![jail("sshd")],
            ..Default::default()
        });
        let mut out = vec![];
        for t in 0..3 {
            e.observe(0, &ev("1.2.3.4", t), &mut out);
        }
        let b = bans(&out);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].target.to_string(), "1.2.3.4/32");
        assert_eq!(b[0].expires, Some(Timestamp::from_secs(2 + 3600)));
        assert_eq!(
            b[0].reason,
            "3 failures in 10m (sshd, last: failed_password)"
        );
        out.clear();
        for t in 3..20 {
            e.observe(0, &ev("1.2.3.4", t), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(e.stats().while_banned, 17);
        e.expire(Timestamp::from_secs(4000), &mut out);
        assert!(matches!(&out[0], Action::Unban(_, UnbanReason::Expired)));
    }

    #[test]
    fn allowlist_never_banned_and_v6_aggregation() {
        let mut e = Engine::new(EngineConfig {
            jails: vec![jail("sshd")],
            allowlist: Allowlist::new([
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8:1:2::7/128".parse().unwrap(),
            ]),
            ..Default::default()
        });
        let mut out = vec![];
        for t in 0..50 {
            e.observe(0, &ev("10.1.2.3", t), &mut out);
            e.observe(0, &ev("::ffff:10.1.2.3", t), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(e.stats().allowlisted, 100);
        // Three addresses of one /64 make one network ban.
        for (i, ip) in ["2a01:4f8:1:2::1", "2a01:4f8:1:2::2", "2a01:4f8:1:2:ffff::3"]
            .iter()
            .enumerate()
        {
            e.observe(0, &ev(ip, 100 + i as i64), &mut out);
        }
        assert_eq!(bans(&out)[0].target.to_string(), "2a01:4f8:1:2::/64");
        // A /64 that holds an allowlisted address is counted per address instead.
        out.clear();
        for t in 0..3 {
            e.observe(0, &ev("2001:db8:1:2::8", 200 + t), &mut out);
        }
        assert_eq!(bans(&out)[0].target.to_string(), "2001:db8:1:2::8/128");
        assert!(e
            .manual_ban(
                "10.0.0.0/24".parse().unwrap(),
                None,
                "x",
                Timestamp::from_secs(1),
                &mut out
            )
            .is_err());
        // The mapped form of an allowlisted address is refused too; another one is banned
        // as the IPv4 address it is.
        assert!(e
            .manual_ban(
                "::ffff:10.0.0.7/128".parse().unwrap(),
                None,
                "x",
                Timestamp::from_secs(1),
                &mut out
            )
            .is_err());
        let d = e
            .manual_ban(
                "::ffff:198.51.100.7/128".parse().unwrap(),
                None,
                "x",
                Timestamp::from_secs(1),
                &mut out,
            )
            .unwrap();
        assert_eq!(d.target.to_string(), "198.51.100.7/32");
    }

    #[test]
    fn escalation_and_recidive_replace_shorter_ban() {
        let mut j = jail("sshd");
        j.escalation = Some(Escalation {
            factor: 2.0,
            max: Duration::from_secs(3 * 3600),
            window: Duration::from_secs(7 * 86400),
        });
        let mut e = Engine::new(EngineConfig {
            jails: vec![j],
            recidive: Some(RecidiveParams {
                max_retry: 4,
                find_time: Duration::from_secs(86400),
                ban_time: Some(Duration::from_secs(7 * 86400)),
            }),
            ..Default::default()
        });
        let mut out = vec![];
        let mut t = 0;
        let mut lengths = vec![];
        for _round in 0..4 {
            out.clear();
            for _ in 0..3 {
                e.observe(0, &ev("9.9.9.9", t), &mut out);
                t += 1;
            }
            let b = bans(&out);
            lengths.push(b[0].duration().unwrap().as_secs());
            t += 4 * 3600; // past any ban
            e.expire(Timestamp::from_secs(t), &mut vec![]);
        }
        assert_eq!(
            lengths,
            [3600, 7200, 10800, 10800],
            "doubling, capped at max"
        );
        // The fourth ban triggered recidive, which replaced the jail ban.
        assert!(out.iter().any(
            |a| matches!(a, Action::Unban(d, UnbanReason::Replaced) if d.origin == Origin::Jail)
        ));
        let rec = bans(&out)
            .into_iter()
            .find(|d| d.origin == Origin::Recidive)
            .unwrap();
        assert_eq!(rec.duration().unwrap().as_secs(), 7 * 86400);
        assert_eq!(
            e.active_for(&"9.9.9.9/32".parse().unwrap()).unwrap().origin,
            Origin::Recidive
        );
    }

    #[test]
    fn dry_run_and_manual() {
        let mut e = Engine::new(EngineConfig {
            jails: vec![jail("sshd")],
            dry_run: true,
            ..Default::default()
        });
        let mut out = vec![];
        for t in 0..3 {
            e.observe(0, &ev("1.2.3.4", t), &mut out);
        }
        assert!(bans(&out)[0].simulated);
        out.clear();
        assert_eq!(e.unban(&"1.2.3.0/24".parse().unwrap(), &mut out), 1);
        assert!(matches!(&out[0], Action::Unban(_, UnbanReason::Manual)));
        assert_eq!(e.active().count(), 0);
    }

    #[test]
    fn durations_format() {
        assert_eq!(fmt_duration(Duration::from_secs(600)), "10m");
        assert_eq!(fmt_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(fmt_duration(Duration::from_secs(604800)), "1w");
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    #[test]
    fn reconfigure_keeps_state() {
        let j = JailParams {
            name: "sshd".into(),
            max_retry: 3,
            find_time: Duration::from_secs(600),
            ban_time: Some(Duration::from_secs(60)),
            escalation: None,
            v6_prefix: 64,
            max_keys: 100,
            dry_run: false,
        };
        let mut e = Engine::new(EngineConfig {
            jails: vec![j.clone()],
            ..Default::default()
        });
        let ev = |ip: &str, t: i64| Event {
            time: Timestamp::from_secs(t),
            ip: ip.parse().unwrap(),
            filter: "sshd".into(),
            rule: "r".into(),
            failure: true,
            user: None,
            fields: vec![],
            evidence: "".into(),
        };
        let mut out = vec![];
        e.observe(0, &ev("1.1.1.1", 0), &mut out);
        e.observe(0, &ev("1.1.1.1", 1), &mut out);
        for t in 0..3 {
            e.observe(0, &ev("2.2.2.2", t), &mut out);
        }
        assert_eq!(out.len(), 1);
        let mut other = j.clone();
        other.name = "web".into();
        e.reconfigure(
            EngineConfig {
                jails: vec![other, j],
                allowlist: Allowlist::new(["2.2.2.0/24".parse().unwrap()]),
                ..Default::default()
            },
            &mut out,
        );
        // The allowlist now covers 2.2.2.2: its ban is lifted.
        assert!(
            matches!(&out[1], Action::Unban(d, UnbanReason::Manual) if d.target.to_string() == "2.2.2.2/32")
        );
        // sshd is now jail 1 and kept its count of 2 for 1.1.1.1: one more failure bans.
        out.clear();
        e.observe(1, &ev("1.1.1.1", 2), &mut out);
        assert_eq!(out.len(), 1);
    }
}
