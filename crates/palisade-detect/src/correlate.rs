//! Correlation across the hosts of a fleet: fleet jails over every agent's events.
//!
//! A fleet server feeds every event it ingests to [`Correlator::observe`], with the event's
//! time already corrected by the agent's measured clock offset. Each fleet jail counts the
//! failures of an offender (an address, or its IPv4 `/ipv4_prefix` or IPv6 `/ipv6_prefix`
//! network) over all hosts and reports a [`FleetDetection`] when a window of `find_time`
//! holds at least `max_retry` failures that came from at least `min_hosts` distinct hosts —
//! the slow brute force spread over many hosts, each of them below its own threshold.
//!
//! # Semantics (exact; `tests::reference` checks them against a brute-force model)
//!
//! Per fleet jail, on event time:
//! * The fleet jail's clock `G` is the newest time of any event of its jails seen so far.
//! * A target detected at clock `G₀` is banned until `G` reaches `G₀ + ban_time` (never, for
//!   a permanent ban); failures of a banned target are not counted (`while_banned`).
//! * Each target keeps the failures accepted since its last detection. `M` is the newest
//!   of them. A failure at `t <= M - find_time` (older than the window of the target's newest
//!   failure) is refused as too late (`too_late`): events out of order *within* the window
//!   count exactly, stale ones do not revive old evidence.
//! * A target whose newest failure is `2 × find_time` behind `G` is forgotten (it could never
//!   be in a window with a failure still accepted).
//! * Of one host's failures for one target only the newest `max_retry` are kept: more can
//!   never change a decision on in-order events (one host alone reaches the count with them).
//! * Windows are half-open `(end - find_time, end]`. After a failure at `t` is counted, every
//!   window containing `t` is examined (ends at the kept failure times in `[t, t +
//!   find_time)`), earliest end first; the first window with `>= max_retry` failures from
//!   `>= min_hosts` hosts is the detection (its failures and hosts are reported), the target's
//!   failures are dropped and the ban starts.
//!
//! # Bounds
//!
//! At most `max_keys` targets, `max_hosts_per_key` hosts per target (the host idle longest
//! makes room, its failures go) and `max_events` failures kept per fleet jail; when a bound is
//! hit, forgotten targets are swept first, then the half seen least recently are evicted
//! (counted in [`FleetJailStats`]). Bans remembered: at most `max_keys` (expired ones first,
//! then those ending soonest). Memory per fleet jail is about `max_keys × 250 + max_events ×
//! 24` bytes (measured by bench/fleet/correlate.sh: 100,000 targets holding 1,000,000
//! failures, 42 MB). Host names are kept once for all fleet jails, with an id each; past
//! 1,048,576 names the further hosts share one id, reported as [`OTHER_HOSTS`].
//!
//! The allowlist is not applied here: the server's engine checks it before a ban is taken.

use ahash::RandomState;
use ipnet::{IpNet, Ipv4Net};
use palisade_core::{aggregate, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often (fleet event time) forgotten targets and ended bans are swept.
const SWEEP_EVERY_US: i64 = 60 * Timestamp::MICROS;

/// Most distinct host names given their own id; further hosts share one id (named
/// [`OTHER_HOSTS`]), so a runaway number of names cannot grow memory without bound.
const MAX_HOST_IDS: usize = 1 << 20;

/// The name reported for the hosts past the 1,048,576 distinct names that get an id each.
pub const OTHER_HOSTS: &str = "(other hosts)";

/// One fleet jail's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetJailSpec {
    /// Name (fleet bans carry it as their jail).
    pub name: String,
    /// The agents' jails whose events count; empty = all.
    pub jails: Vec<String>,
    /// Failures (summed over hosts) that trigger a detection (≥ 1).
    pub max_retry: u32,
    /// Counting window (event time).
    pub find_time: Duration,
    /// Ban length; `None` = permanent.
    pub ban_time: Option<Duration>,
    /// Distinct hosts the failures must come from (≥ 1).
    pub min_hosts: u32,
    /// IPv6 offenders are counted per network of this prefix (128 = per address).
    pub ipv6_prefix: u8,
    /// IPv4 offenders are counted per network of this prefix (32 = per address).
    pub ipv4_prefix: u8,
    /// Bound on targets tracked (and on bans remembered).
    pub max_keys: usize,
    /// Bound on hosts tracked per target (raised to `min_hosts` if lower).
    pub max_hosts_per_key: usize,
    /// Bound on failures kept over all targets.
    pub max_events: usize,
}

impl FleetJailSpec {
    /// A spec with the given thresholds; `min_hosts` 2, per-address IPv4, IPv6 per /64,
    /// all jails, default bounds (100,000 targets, 64 hosts per target, 1,000,000 failures).
    pub fn new(
        name: impl Into<String>,
        max_retry: u32,
        find_time: Duration,
        ban_time: Option<Duration>,
    ) -> Self {
        FleetJailSpec {
            name: name.into(),
            jails: Vec::new(),
            max_retry,
            find_time,
            ban_time,
            min_hosts: 2,
            ipv6_prefix: 64,
            ipv4_prefix: 32,
            max_keys: 100_000,
            max_hosts_per_key: 64,
            max_events: 1_000_000,
        }
    }
}

/// A fleet jail's threshold was reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetDetection {
    /// The fleet jail's name.
    pub fleet_jail: String,
    /// The offender: an address, or its aggregated network.
    pub target: IpNet,
    /// The distinct hosts whose failures are in the window, sorted.
    pub hosts: Vec<String>,
    /// Failures in the window.
    pub failures: u32,
    /// Ban length; `None` = permanent.
    pub ban_time: Option<Duration>,
    /// The fleet jail's clock when it detected (the ban starts then, in event time).
    pub time: Timestamp,
}

/// Counters of one fleet jail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetJailStats {
    /// Failures observed (of this fleet jail's jails).
    pub failures: u64,
    /// Detections returned.
    pub detections: u64,
    /// Failures of a target banned by this fleet jail (not counted).
    pub while_banned: u64,
    /// Failures older than the window of their target's newest failure (not counted).
    pub too_late: u64,
    /// Targets evicted because a bound was hit (their failures lost).
    pub keys_evicted: u64,
    /// Hosts evicted from a target that tracked `max_hosts_per_key` hosts.
    pub hosts_evicted: u64,
    /// Bans forgotten before their end because `max_keys` bans were remembered.
    pub bans_evicted: u64,
}

/// Host names by id, shared by every fleet jail, and a counter per id for window checks
/// (all zero between calls: a check resets what it touched).
#[derive(Debug)]
struct Hosts {
    ids: HashMap<Arc<str>, u32, RandomState>,
    names: Vec<Arc<str>>,
    scratch: Vec<u32>,
}

impl Hosts {
    fn id(&mut self, host: &str) -> u32 {
        if let Some(&id) = self.ids.get(host) {
            return id;
        }
        let name: Arc<str> = if self.names.len() + 1 < MAX_HOST_IDS {
            Arc::from(host)
        } else {
            Arc::from(OTHER_HOSTS)
        };
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name, id);
        self.scratch.push(0);
        id
    }
}

#[derive(Debug, Default)]
struct Key {
    /// Newest failure accepted (`M`).
    newest: i64,
    /// (time, host id), sorted by time (ties in arrival order).
    events: Vec<(i64, u32)>,
}

#[derive(Debug)]
struct FleetJail {
    spec: FleetJailSpec,
    find_us: i64,
    max_hosts: usize,
    clock: Option<i64>,
    keys: HashMap<IpNet, Key, RandomState>,
    /// Target → end of the ban (`None` = permanent).
    bans: HashMap<IpNet, Option<i64>, RandomState>,
    events: usize,
    last_sweep: Option<i64>,
    stats: FleetJailStats,
}

/// All fleet jails of a server. Synchronous and event-time driven: replaying the same events
/// gives the same detections.
#[derive(Debug)]
pub struct Correlator {
    jails: Vec<FleetJail>,
    hosts: Hosts,
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

impl Correlator {
    /// Builds the fleet jails.
    pub fn new(specs: &[FleetJailSpec]) -> Self {
        let jails = specs
            .iter()
            .map(|s| {
                let mut spec = s.clone();
                spec.max_retry = spec.max_retry.max(1);
                spec.min_hosts = spec.min_hosts.max(1);
                spec.ipv4_prefix = spec.ipv4_prefix.clamp(1, 32);
                spec.ipv6_prefix = spec.ipv6_prefix.clamp(1, 128);
                spec.max_keys = spec.max_keys.max(16);
                spec.max_events = spec.max_events.max(16);
                let max_hosts = spec.max_hosts_per_key.max(spec.min_hosts as usize).max(1);
                FleetJail {
                    find_us: micros(spec.find_time).max(1),
                    max_hosts,
                    spec,
                    clock: None,
                    keys: HashMap::with_hasher(RandomState::new()),
                    bans: HashMap::with_hasher(RandomState::new()),
                    events: 0,
                    last_sweep: None,
                    stats: FleetJailStats::default(),
                }
            })
            .collect();
        Correlator {
            jails,
            hosts: Hosts {
                ids: HashMap::with_hasher(RandomState::new()),
                names: Vec::new(),
                scratch: Vec::new(),
            },
        }
    }

    /// The fleet jails' settings, in order.
    pub fn specs(&self) -> impl Iterator<Item = &FleetJailSpec> {
        self.jails.iter().map(|j| &j.spec)
    }

    /// One event from `host`'s jail `jail`, at `time` (corrected for the host's clock offset).
    /// Events that are not failures only advance the fleet jails' clocks. Returns the
    /// detections it completed (at most one per fleet jail).
    pub fn observe(
        &mut self,
        host: &str,
        jail: &str,
        ip: IpAddr,
        time: Timestamp,
        failure: bool,
    ) -> Vec<FleetDetection> {
        let mut out = Vec::new();
        let mut host_id = None;
        for j in 0..self.jails.len() {
            let fj = &self.jails[j];
            if !fj.spec.jails.is_empty() && !fj.spec.jails.iter().any(|n| n == jail) {
                continue;
            }
            let t = time.micros();
            let fj = &mut self.jails[j];
            let g = fj.clock.map_or(t, |c| c.max(t));
            fj.clock = Some(g);
            if failure {
                let target = fj.target(ip);
                let h = *host_id.get_or_insert_with(|| self.hosts.id(host));
                if let Some(d) = fj.failure(h, target, t, g, &mut self.hosts) {
                    out.push(d);
                }
            }
            let fj = &mut self.jails[j];
            if fj.last_sweep.is_none_or(|l| g - l > SWEEP_EVERY_US) {
                fj.sweep(g);
                fj.last_sweep = Some(g);
            }
        }
        out
    }

    /// Forgets `target`'s ban in every fleet jail (the fleet ban was lifted by hand), so it
    /// can be detected again.
    pub fn forget(&mut self, target: &IpNet) {
        for j in &mut self.jails {
            j.bans.remove(target);
        }
    }

    /// Records a ban in force (restored from the fleet ban log at start) so the target is not
    /// detected again until `until` (`None` = permanent). Unknown fleet jails are ignored.
    pub fn note_ban(&mut self, fleet_jail: &str, target: IpNet, until: Option<Timestamp>) {
        if let Some(j) = self.jails.iter_mut().find(|j| j.spec.name == fleet_jail) {
            if let Some(k) = j.keys.remove(&target) {
                j.events -= k.events.len();
            }
            j.bans.insert(target, until.map(Timestamp::micros));
        }
    }

    /// Counters per fleet jail, in order.
    pub fn stats(&self) -> Vec<(&str, FleetJailStats)> {
        self.jails
            .iter()
            .map(|j| (j.spec.name.as_str(), j.stats))
            .collect()
    }

    /// Targets tracked over all fleet jails.
    pub fn tracked(&self) -> usize {
        self.jails.iter().map(|j| j.keys.len()).sum()
    }

    /// Failures kept over all fleet jails.
    pub fn kept_failures(&self) -> usize {
        self.jails.iter().map(|j| j.events).sum()
    }
}

impl FleetJail {
    fn target(&self, ip: IpAddr) -> IpNet {
        match aggregate(ip, self.spec.ipv6_prefix) {
            IpNet::V4(n) if self.spec.ipv4_prefix < 32 => IpNet::V4(
                Ipv4Net::new(n.addr(), self.spec.ipv4_prefix)
                    .expect("prefix clamped to 1..=32")
                    .trunc(),
            ),
            n => n,
        }
    }

    fn horizon(&self) -> i64 {
        self.find_us.saturating_mul(2)
    }

    fn failure(
        &mut self,
        h: u32,
        target: IpNet,
        t: i64,
        g: i64,
        hosts: &mut Hosts,
    ) -> Option<FleetDetection> {
        self.stats.failures += 1;
        if !self.bans.is_empty() {
            if let Some(end) = self.bans.get(&target) {
                if end.is_none_or(|e| g < e) {
                    self.stats.while_banned += 1;
                    return None;
                }
                self.bans.remove(&target);
            }
        }
        let horizon = self.horizon();
        let known = match self.keys.get_mut(&target) {
            Some(k) if k.newest <= g.saturating_sub(horizon) => {
                // Forgotten: nothing it holds can share a window with a failure accepted now.
                self.events -= k.events.len();
                k.events.clear();
                k.newest = t;
                true
            }
            Some(k) if t <= k.newest.saturating_sub(self.find_us) => {
                self.stats.too_late += 1;
                return None;
            }
            Some(_) => true,
            None => false,
        };
        if (!known && self.keys.len() >= self.spec.max_keys) || self.events >= self.spec.max_events
        {
            self.make_room(g);
        }
        let max_retry = self.spec.max_retry as usize;
        let max_hosts = self.max_hosts;
        let key = self.keys.entry(target).or_insert_with(|| Key {
            newest: t,
            events: Vec::new(),
        });
        let before = key.events.len();
        let mut mine = key.events.iter().filter(|e| e.1 == h).count();
        if mine == 0 && !key.events.is_empty() {
            // A new host for this target: when it already has max_hosts hosts, the host whose
            // newest failure is oldest gives way.
            let mut seen: Vec<(u32, i64)> = Vec::new();
            for &(et, eh) in key.events.iter().rev() {
                let c = &mut hosts.scratch[eh as usize];
                if *c == 0 {
                    *c = 1;
                    seen.push((eh, et));
                }
            }
            for &(eh, _) in &seen {
                hosts.scratch[eh as usize] = 0;
            }
            if seen.len() >= max_hosts {
                let (gone, _) = *seen.iter().min_by_key(|s| s.1).expect("max_hosts >= 1");
                key.events.retain(|e| e.1 != gone);
                self.stats.hosts_evicted += 1;
            }
        }
        let pos = key.events.partition_point(|e| e.0 <= t);
        key.events.insert(pos, (t, h));
        mine += 1;
        if mine > max_retry {
            // Keep this host's newest `max_retry` failures.
            let i = key
                .events
                .iter()
                .position(|e| e.1 == h)
                .expect("the host has failures");
            key.events.remove(i);
        }
        key.newest = key.newest.max(t);
        // Drop what can no longer share a window with an accepted failure.
        let stale = key.newest.saturating_sub(horizon);
        let n = key.events.partition_point(|e| e.0 <= stale);
        key.events.drain(..n);
        self.events = self.events + key.events.len() - before;

        let found = find_window(
            &key.events,
            t,
            self.find_us,
            self.spec.max_retry,
            self.spec.min_hosts,
            &mut hosts.scratch,
        );
        let (lo, hi) = found?;
        let mut ids: Vec<u32> = key.events[lo..hi].iter().map(|e| e.1).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut names: Vec<String> = ids
            .iter()
            .map(|&i| hosts.names[i as usize].to_string())
            .collect();
        names.sort();
        let failures = (hi - lo) as u32;
        let k = self.keys.remove(&target).expect("present");
        self.events -= k.events.len();
        self.stats.detections += 1;
        if self.bans.len() >= self.spec.max_keys {
            self.make_room_bans(g);
        }
        self.bans.insert(
            target,
            self.spec.ban_time.map(|b| g.saturating_add(micros(b))),
        );
        Some(FleetDetection {
            fleet_jail: self.spec.name.clone(),
            target,
            hosts: names,
            failures,
            ban_time: self.spec.ban_time,
            time: Timestamp(g),
        })
    }

    /// Drops forgotten targets and ended bans.
    fn sweep(&mut self, g: i64) {
        let limit = g.saturating_sub(self.horizon());
        let mut dropped = 0;
        self.keys.retain(|_, k| {
            let keep = k.newest > limit;
            if !keep {
                dropped += k.events.len();
            }
            keep
        });
        self.events -= dropped;
        self.bans.retain(|_, end| end.is_none_or(|e| g < e));
    }

    fn make_room(&mut self, g: i64) {
        self.sweep(g);
        while self.keys.len() >= self.spec.max_keys
            || (self.events >= self.spec.max_events && !self.keys.is_empty())
        {
            let mut newest: Vec<i64> = self.keys.values().map(|k| k.newest).collect();
            let mid = newest.len() / 2;
            let (_, cut, _) = newest.select_nth_unstable(mid);
            let cut = *cut;
            let before = self.keys.len();
            let mut dropped = 0;
            let mut left = before - before / 2; // evict at least half (ties included)
            self.keys.retain(|_, k| {
                let evict = k.newest <= cut && left > 0;
                if evict {
                    left -= 1;
                    dropped += k.events.len();
                }
                !evict
            });
            self.events -= dropped;
            self.stats.keys_evicted += (before - self.keys.len()) as u64;
        }
    }

    fn make_room_bans(&mut self, g: i64) {
        self.bans.retain(|_, end| end.is_none_or(|e| g < e));
        if self.bans.len() < self.spec.max_keys {
            return;
        }
        let mut ends: Vec<i64> = self.bans.values().map(|e| e.unwrap_or(i64::MAX)).collect();
        let mid = ends.len() / 2;
        let (_, cut, _) = ends.select_nth_unstable(mid);
        let cut = *cut;
        let before = self.bans.len();
        let mut left = before - before / 2;
        self.bans.retain(|_, e| {
            let evict = e.unwrap_or(i64::MAX) <= cut && left > 0;
            if evict {
                left -= 1;
            }
            !evict
        });
        self.stats.bans_evicted += (before - self.bans.len()) as u64;
    }
}

/// The first window `(end - find, end]` with `end` a kept failure time in `[t, t + find)`, in
/// order of `end`, holding `>= max_retry` failures from `>= min_hosts` hosts: the index range
/// of its failures. `count` (per host id) is all zero on entry and on return.
fn find_window(
    ev: &[(i64, u32)],
    t: i64,
    find: i64,
    max_retry: u32,
    min_hosts: u32,
    count: &mut [u32],
) -> Option<(usize, usize)> {
    let start = ev.partition_point(|e| e.0 <= t.saturating_sub(find));
    let last_end = t.saturating_add(find);
    let (mut lo, mut distinct, mut found, mut hi) = (start, 0u32, None, start);
    while hi < ev.len() {
        let end = ev[hi].0;
        if end >= last_end {
            break;
        }
        let c = &mut count[ev[hi].1 as usize];
        if *c == 0 {
            distinct += 1;
        }
        *c += 1;
        hi += 1;
        while ev[lo].0 <= end.saturating_sub(find) {
            let c = &mut count[ev[lo].1 as usize];
            *c -= 1;
            if *c == 0 {
                distinct -= 1;
            }
            lo += 1;
        }
        let last_at_end = hi == ev.len() || ev[hi].0 != end;
        if end >= t && last_at_end && (hi - lo) as u64 >= max_retry as u64 && distinct >= min_hosts
        {
            found = Some((lo, hi));
            break;
        }
    }
    for e in &ev[lo..hi] {
        count[e.1 as usize] = 0;
    }
    found
}

#[cfg(test)]
mod tests;
