//! `/api/v1/stats`: aggregates for the overview page, and their cache.
//!
//! The numbers come from the store's hourly rollup (events), the decisions table (bans) and
//! `ip_history` (offenders), so they cost the same with a thousand events or a hundred
//! million. Answers are kept for a few seconds; a stale answer is served while a fresh one is
//! computed in the background, so a busy dashboard never waits on the database.

use crate::geo::GeoIp;
use axum::body::Bytes;
use palisade_core::{Clock, SystemClock, Timestamp};
use palisade_store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses whose countries are summed for the country ranking.
const COUNTRY_SAMPLE: u32 = 5_000;

/// A time range the overview can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Range {
    /// Last 24 hours, hourly.
    Day,
    /// Last 7 days, hourly.
    Week,
    /// Last 30 days, daily.
    Month,
}

impl Range {
    /// Parses `24h`, `7d`, `30d`.
    pub(crate) fn parse(s: Option<&str>) -> Option<Range> {
        match s.unwrap_or("24h") {
            "24h" | "1d" => Some(Range::Day),
            "7d" | "1w" => Some(Range::Week),
            "30d" => Some(Range::Month),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// (bucket length in hours, number of buckets)
    fn buckets(self) -> (i64, i64) {
        match self {
            Range::Day => (1, 24),
            Range::Week => (1, 168),
            Range::Month => (24, 30),
        }
    }
}

/// Totals over the range.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Events.
    pub events: u64,
    /// Failures among them.
    pub failures: u64,
    /// Decisions taken.
    pub bans: u64,
    /// Decisions in force now.
    pub active_bans: u64,
}

/// One bucket of the event series.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPoint {
    /// Bucket start (RFC 3339).
    pub t: String,
    /// Events.
    pub events: u64,
    /// Failures.
    pub failures: u64,
}

/// One bucket of the ban series.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BanPoint {
    /// Bucket start (RFC 3339).
    pub t: String,
    /// Decisions taken.
    pub bans: u64,
}

/// An offender.
#[derive(Serialize, Clone, utoipa::ToSchema)]
pub struct TopIp {
    /// Address.
    pub ip: String,
    /// Failures (all time).
    pub failures: u64,
    /// Bans received (all time).
    pub times_banned: u64,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// Country code, when GeoIP knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Failures per country.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CountryCount {
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    /// Failures of its addresses.
    pub failures: u64,
    /// Addresses.
    pub addresses: u64,
}

/// Events per jail.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JailCount {
    /// Jail.
    pub jail: String,
    /// Events in the range.
    pub events: u64,
    /// Failures in the range.
    pub failures: u64,
}

/// The overview's numbers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// `24h`, `7d` or `30d`.
    pub range: &'static str,
    /// `hour` or `day`.
    pub bucket: &'static str,
    /// When computed (RFC 3339).
    pub generated: String,
    /// Totals.
    pub totals: Totals,
    /// Events per bucket, oldest first, every bucket present.
    pub events: Vec<EventPoint>,
    /// Bans per bucket, oldest first, every bucket present.
    pub bans: Vec<BanPoint>,
    /// Addresses seen in the range with the most failures (all time).
    pub top_ips: Vec<TopIp>,
    /// Countries of the addresses seen in the range, most failures first (empty without
    /// GeoIP).
    pub top_countries: Vec<CountryCount>,
    /// Jails with the most events in the range.
    pub top_jails: Vec<JailCount>,
    /// The address with the most failures among those seen in the range.
    pub most_offending_ip: Option<TopIp>,
}

/// Computes the statistics for `range` at `now`.
pub(crate) fn compute(
    store: &mut dyn Store,
    geo: &GeoIp,
    range: Range,
    now: Timestamp,
) -> Result<Stats, StoreError> {
    const HOUR: i64 = 3_600 * Timestamp::MICROS;
    let (len_h, n) = range.buckets();
    let bucket = len_h * HOUR;
    // Buckets are aligned to UTC hours (or days); the last one holds `now`.
    let last_start = now.0.div_euclid(bucket) * bucket;
    let first_start = last_start - (n - 1) * bucket;
    let since = Timestamp(first_start);
    let until = Timestamp(last_start + bucket);
    let idx = |t: Timestamp| -> Option<usize> {
        let i = (t.0 - first_start).div_euclid(bucket);
        (0..n).contains(&i).then_some(i as usize)
    };
    let mut events: Vec<EventPoint> = (0..n)
        .map(|i| EventPoint {
            t: Timestamp(first_start + i * bucket).to_string(),
            events: 0,
            failures: 0,
        })
        .collect();
    let mut bans: Vec<BanPoint> = (0..n)
        .map(|i| BanPoint {
            t: Timestamp(first_start + i * bucket).to_string(),
            bans: 0,
        })
        .collect();
    let mut jails: HashMap<String, (u64, u64)> = HashMap::new();
    let mut totals = Totals {
        events: 0,
        failures: 0,
        bans: 0,
        active_bans: 0,
    };
    for h in store.event_hours(since, until)? {
        if let Some(i) = idx(h.hour) {
            events[i].events += h.count;
            events[i].failures += h.failures;
            totals.events += h.count;
            totals.failures += h.failures;
            let j = jails.entry(h.jail).or_default();
            j.0 += h.count;
            j.1 += h.failures;
        }
    }
    for h in store.ban_hours(since, until)? {
        if let Some(i) = idx(h.hour) {
            bans[i].bans += h.count;
            totals.bans += h.count;
        }
    }
    totals.active_bans = store.active_decision_count(now)?;
    let mut top_jails: Vec<JailCount> = jails
        .into_iter()
        .map(|(jail, (events, failures))| JailCount {
            jail,
            events,
            failures,
        })
        .collect();
    top_jails.sort_by(|a, b| b.events.cmp(&a.events).then(a.jail.cmp(&b.jail)));
    top_jails.truncate(10);

    let sample = if geo.enabled() { COUNTRY_SAMPLE } else { 10 };
    let offenders = store.top_offenders(since, sample)?;
    let mut countries: HashMap<String, (u64, u64)> = HashMap::new();
    let mut top_ips = Vec::new();
    for (i, h) in offenders.iter().enumerate() {
        let country = geo.country(h.ip);
        if let Some(c) = &country {
            let e = countries.entry(c.clone()).or_default();
            e.0 += h.failures;
            e.1 += 1;
        }
        if i < 10 {
            top_ips.push(TopIp {
                ip: h.ip.to_string(),
                failures: h.failures,
                times_banned: h.times_banned,
                last_seen: h.last_seen.to_string(),
                country,
            });
        }
    }
    let mut top_countries: Vec<CountryCount> = countries
        .into_iter()
        .map(|(country, (failures, addresses))| CountryCount {
            country,
            failures,
            addresses,
        })
        .collect();
    top_countries.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.country.cmp(&b.country)));
    top_countries.truncate(250);
    Ok(Stats {
        range: range.name(),
        bucket: if len_h == 1 { "hour" } else { "day" },
        generated: now.to_string(),
        totals,
        events,
        bans,
        most_offending_ip: top_ips.first().cloned(),
        top_ips,
        top_countries,
        top_jails,
    })
}

struct Entry {
    at: Instant,
    body: Bytes,
    refreshing: bool,
}

/// Serialised answers per range, reused for `ttl`.
pub(crate) struct StatsCache {
    ttl: Duration,
    entries: Mutex<HashMap<Range, Entry>>,
}

/// What the cache says about a range.
pub(crate) enum Cached {
    /// Fresh: serve it.
    Fresh(Bytes),
    /// Stale: serve it, and refresh in the background (the caller was chosen to).
    Refresh(Bytes),
    /// Stale and already being refreshed: serve it.
    Stale(Bytes),
    /// Nothing yet: compute now.
    Missing,
}

impl StatsCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        StatsCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    pub(crate) fn get(&self, r: Range) -> Cached {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(&r) {
            None => Cached::Missing,
            Some(e) if e.at.elapsed() < self.ttl => Cached::Fresh(e.body.clone()),
            Some(e) if e.refreshing => Cached::Stale(e.body.clone()),
            Some(e) => {
                e.refreshing = true;
                Cached::Refresh(e.body.clone())
            }
        }
    }

    pub(crate) fn put(&self, r: Range, body: Bytes) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                r,
                Entry {
                    at: Instant::now(),
                    body,
                    refreshing: false,
                },
            );
    }

    /// A background refresh failed: let the next request try again.
    pub(crate) fn refresh_failed(&self, r: Range) {
        if let Some(e) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&r)
        {
            e.refreshing = false;
        }
    }

    /// Forgets everything (after a write the overview should show at once).
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Now, by the wall clock.
pub(crate) fn now() -> Timestamp {
    SystemClock.now()
}
