//! Windowed failure counting per key.
//!
//! The algorithm reproduces fail2ban's `FailManager` (so a replay gives the same bans as
//! fail2ban on the same failures):
//! * a key's ticket holds `first`, `last` and `retry`;
//! * a failure at `t > last` whose window start is older than `t - find_time` first scales
//!   `retry` down to the rate observed so far (`round_half_even(retry / (t - first) *
//!   find_time)`) and moves `first` to `t - find_time`; then `retry += 1`;
//! * when `retry >= max_retry` the ticket is removed and a [`Detection`] is returned;
//! * a sweep every 60 s of event time drops tickets whose `last <= now - find_time`.
//!
//! State is bounded: at most `max_keys` tickets. When full, expired tickets are swept; if
//! that is not enough, the half least recently seen are evicted (amortised O(1) per insert).

use ahash::RandomState;
use ipnet::IpNet;
use palisade_core::Timestamp;
use std::collections::HashMap;

/// Approximate memory per tracked key, hash table overhead included (documented bound:
/// `max_keys * BYTES_PER_KEY`).
pub const BYTES_PER_KEY: usize = 64;

/// How often (event time) stale tickets are swept, as fail2ban's server loop does.
const SWEEP_EVERY_US: i64 = 60 * Timestamp::MICROS;

#[derive(Clone, Copy, Debug)]
struct Ticket {
    first: i64,
    last: i64,
    retry: u32,
}

/// A key crossed its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The offender (an address, or an IPv6 network when aggregated).
    pub key: IpNet,
    /// Time of the failure that crossed the threshold.
    pub time: Timestamp,
    /// Failures counted in the window.
    pub failures: u32,
}

/// Counters for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Failures observed.
    pub failures: u64,
    /// Detections returned.
    pub detections: u64,
    /// Tickets evicted because the table was full.
    pub evicted: u64,
}

/// Per-key windowed counter for one jail.
#[derive(Debug)]
pub struct Detector {
    max_retry: u32,
    find_time_us: i64,
    max_keys: usize,
    tickets: HashMap<IpNet, Ticket, RandomState>,
    last_sweep: Option<i64>,
    stats: DetectorStats,
}

impl Detector {
    /// `max_retry` ≥ 1 failures within `find_time` trigger a detection; at most `max_keys`
    /// keys are tracked.
    pub fn new(max_retry: u32, find_time: std::time::Duration, max_keys: usize) -> Self {
        Detector {
            max_retry: max_retry.max(1),
            find_time_us: find_time.as_micros().min(i64::MAX as u128) as i64,
            max_keys: max_keys.max(16),
            tickets: HashMap::with_hasher(RandomState::new()),
            last_sweep: None,
            stats: DetectorStats::default(),
        }
    }

    /// Changes thresholds in place (reload), keeping the tickets.
    pub fn set_params(&mut self, max_retry: u32, find_time: std::time::Duration, max_keys: usize) {
        self.max_retry = max_retry.max(1);
        self.find_time_us = find_time.as_micros().min(i64::MAX as u128) as i64;
        self.max_keys = max_keys.max(16);
    }

    /// Counts one failure of `key` at `time`; returns a detection when the threshold is hit.
    pub fn observe(&mut self, key: IpNet, time: Timestamp) -> Option<Detection> {
        self.stats.failures += 1;
        let t = time.micros();
        let ft = self.find_time_us;
        let retry = match self.tickets.get_mut(&key) {
            Some(tk) => {
                if t > tk.last {
                    if tk.first < t - ft {
                        let scaled = tk.retry as f64 / (t - tk.first) as f64 * ft as f64;
                        tk.retry = scaled.round_ties_even() as u32;
                        tk.first = t - ft;
                    }
                    tk.last = t;
                }
                tk.retry += 1;
                tk.retry
            }
            None => {
                if self.tickets.len() >= self.max_keys {
                    self.make_room(t);
                }
                self.tickets.insert(
                    key,
                    Ticket {
                        first: t,
                        last: t,
                        retry: 1,
                    },
                );
                1
            }
        };
        let det = if retry >= self.max_retry {
            self.tickets.remove(&key);
            self.stats.detections += 1;
            Some(Detection {
                key,
                time,
                failures: retry,
            })
        } else {
            None
        };
        if self.last_sweep.is_none_or(|l| t - l > SWEEP_EVERY_US) {
            self.sweep(time);
            self.last_sweep = Some(t);
        }
        det
    }

    /// Drops tickets whose last failure is at or before `now - find_time`.
    pub fn sweep(&mut self, now: Timestamp) {
        let limit = now.micros() - self.find_time_us;
        self.tickets.retain(|_, tk| tk.last > limit);
    }

    fn make_room(&mut self, now: i64) {
        self.sweep(Timestamp(now));
        if self.tickets.len() < self.max_keys {
            return;
        }
        let mut lasts: Vec<i64> = self.tickets.values().map(|t| t.last).collect();
        let mid = lasts.len() / 2;
        let (_, cut, _) = lasts.select_nth_unstable(mid);
        let cut = *cut;
        let before = self.tickets.len();
        self.tickets.retain(|_, tk| tk.last > cut);
        self.stats.evicted += (before - self.tickets.len()) as u64;
    }

    /// Forgets a key (manual unban, or a ban was taken elsewhere).
    pub fn forget(&mut self, key: &IpNet) {
        self.tickets.remove(key);
    }

    /// Failures currently counted for `key`.
    pub fn retries(&self, key: &IpNet) -> u32 {
        self.tickets.get(key).map_or(0, |t| t.retry)
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.tickets.len()
    }

    /// Counters.
    pub fn stats(&self) -> DetectorStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn k(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn threshold_within_window() {
        let mut d = Detector::new(3, Duration::from_secs(600), 1000);
        assert!(d.observe(k("1.2.3.4/32"), ts(0)).is_none());
        assert!(d.observe(k("1.2.3.4/32"), ts(100)).is_none());
        assert!(d.observe(k("5.6.7.8/32"), ts(100)).is_none());
        let det = d.observe(k("1.2.3.4/32"), ts(200)).unwrap();
        assert_eq!(det.failures, 3);
        assert_eq!(det.time, ts(200));
        assert_eq!(
            d.retries(&k("1.2.3.4/32")),
            0,
            "ticket removed after detection"
        );
        assert_eq!(d.retries(&k("5.6.7.8/32")), 1);
    }

    #[test]
    fn slow_failures_decay_like_fail2ban() {
        // One failure every 400 s with find_time 600: the rate is 1.5 per window, so retry
        // stays at round(...)+1 and never reaches 5.
        let mut d = Detector::new(5, Duration::from_secs(600), 1000);
        for i in 0..50 {
            assert!(d.observe(k("1.1.1.1/32"), ts(i * 400)).is_none(), "i={i}");
        }
        // Fast burst crosses.
        let mut hit = false;
        for i in 0..5 {
            hit |= d.observe(k("2.2.2.2/32"), ts(30_000 + i)).is_some();
        }
        assert!(hit);
    }

    #[test]
    fn rate_scaling_matches_fail2ban_arithmetic() {
        // fail2ban: first=0 retry=4 at t=0..3; a failure at t=1200 with maxTime=600:
        // retry = round(4/1200*600) = 2, first = 600, then +1 → 3.
        let mut d = Detector::new(10, Duration::from_secs(600), 1000);
        for i in 0..4 {
            d.observe(k("1.1.1.1/32"), ts(i));
        }
        // Avoid the sweep dropping the ticket: sweeps happen on the event after 60 s, and
        // would drop a ticket idle for 600 s. Put the next event within the window.
        d.observe(k("1.1.1.1/32"), ts(500));
        assert_eq!(d.retries(&k("1.1.1.1/32")), 5);
        d.observe(k("1.1.1.1/32"), ts(1000));
        // first=0 < 1000-600: retry = round(5/1000*600)=3, +1 = 4
        assert_eq!(d.retries(&k("1.1.1.1/32")), 4);
    }

    #[test]
    fn half_even_rounding() {
        // retry 1 over 1200 s scaled to 600 → 0.5 → rounds to 0 (ties to even), then +1 = 1.
        let mut d = Detector::new(10, Duration::from_secs(600), 1000);
        d.observe(k("1.1.1.1/32"), ts(0));
        d.last_sweep = Some(i64::MAX / 2); // keep the ticket alive for this arithmetic check
        d.observe(k("1.1.1.1/32"), ts(1200));
        assert_eq!(d.retries(&k("1.1.1.1/32")), 1);
    }

    #[test]
    fn bounded_keys() {
        let mut d = Detector::new(100, Duration::from_secs(3600), 1000);
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(i + 1);
            d.observe(IpNet::from(std::net::IpAddr::V4(ip)), ts(i as i64));
            assert!(d.tracked() <= 1000);
        }
        assert!(d.stats().evicted > 0);
        // The most recent keys survive eviction.
        assert_eq!(d.retries(&k("0.0.39.16/32")), 1);
    }

    #[test]
    fn sweep_drops_idle() {
        let mut d = Detector::new(5, Duration::from_secs(600), 1000);
        d.observe(k("1.1.1.1/32"), ts(0));
        d.observe(k("2.2.2.2/32"), ts(601));
        assert_eq!(d.tracked(), 1);
    }
}
