//! The agent's reconnect policy (issue 18 item 2): exponential backoff with full jitter
//! from [`BASE`] up to [`CAP`], across the configured server URLs, honouring a server's "come
//! back later" (HTTP 503 + `Retry-After` at the upgrade, or a `retry_later` message), jittered
//! so that agents sent away together do not come back together.
//!
//! Pure logic over a caller-supplied random source, so the policy is unit-tested without
//! clocks or sockets.

use std::time::{Duration, Instant};

/// First backoff ceiling.
pub const BASE: Duration = Duration::from_secs(1);
/// Largest backoff ceiling.
pub const CAP: Duration = Duration::from_secs(60);
/// Longest "come back later" an agent honours (a larger `Retry-After` is clamped to it).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Shortest wait between two attempts (no busy loop when the jitter draws 0).
pub const FLOOR: Duration = Duration::from_millis(50);

/// Full-jitter exponential backoff: the n-th consecutive failure waits a uniform random time
/// in `[0, min(CAP, BASE × 2ⁿ)]` (at least [`FLOOR`]).
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BASE, CAP)
    }
}

impl Backoff {
    /// A policy from `base` to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }
    /// The current ceiling: `min(cap, base × 2^failures)`.
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.failures.min(30))
            .min(self.cap)
    }
    /// Records a failure; returns the wait before the next attempt (`unit` in `[0, 1)`).
    pub fn fail(&mut self, unit: f64) -> Duration {
        let wait = self.ceiling().mul_f64(unit.clamp(0.0, 1.0)).max(FLOOR);
        self.failures = self.failures.saturating_add(1);
        wait
    }
    /// A session was established: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A server's "come back in `after`", jittered: uniform in `[after, 1.5 × after]` (never
/// earlier than asked; clamped to [`MAX_RETRY_AFTER`]).
pub fn retry_after(after: Duration, unit: f64) -> Duration {
    let after = after.min(MAX_RETRY_AFTER);
    after + after.mul_f64(0.5 * unit.clamp(0.0, 1.0))
}

/// The configured server URLs, tried in turn: a URL that failed or asked the agent to come
/// back later is left for the next one; one that asked for a delay is not tried before it.
#[derive(Clone, Debug)]
pub struct Servers {
    urls: Vec<String>,
    at: usize,
    not_before: Vec<Option<Instant>>,
}

impl Servers {
    /// From a non-empty list (duplicates removed, order kept).
    pub fn new(urls: &[String]) -> Servers {
        let mut v: Vec<String> = Vec::new();
        for u in urls {
            if !v.contains(u) {
                v.push(u.clone());
            }
        }
        let n = v.len();
        Servers {
            urls: v,
            at: 0,
            not_before: vec![None; n],
        }
    }
    /// How many URLs.
    pub fn len(&self) -> usize {
        self.urls.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }
    /// The URL to try now.
    pub fn current(&self) -> &str {
        &self.urls[self.at]
    }
    /// The current URL could not be reached (or dropped the session): move on to the next.
    pub fn failed(&mut self) {
        if !self.urls.is_empty() {
            self.at = (self.at + 1) % self.urls.len();
        }
    }
    /// The current URL asked to come back at `when`: move on, and do not try it before.
    pub fn busy_until(&mut self, when: Instant) {
        if !self.urls.is_empty() {
            self.not_before[self.at] = Some(when);
            self.failed();
        }
    }
    /// A session was established on the current URL.
    pub fn connected(&mut self) {
        if !self.urls.is_empty() {
            self.not_before[self.at] = None;
        }
    }
    /// How long to wait, at `now`, before the current URL may be tried: the backoff wait,
    /// or longer when that URL asked for it. When the current URL asked for a delay and
    /// another one did not, the next free one becomes current instead.
    pub fn wait(&mut self, backoff: Duration, now: Instant) -> Duration {
        let n = self.urls.len();
        for k in 0..n {
            let i = (self.at + k) % n;
            if self.not_before[i].is_none_or(|t| t <= now) {
                self.at = i;
                return backoff;
            }
        }
        // Every URL asked for a delay: the one free soonest.
        let (i, t) = self
            .not_before
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|&(_, t)| t)
            .expect("every URL has a not-before");
        self.at = i;
        backoff.max(t.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_one_second_to_sixty() {
        let mut b = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_secs());
            b.fail(0.5);
        }
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), BASE);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let mut b = Backoff::default();
        for _ in 0..6 {
            b.fail(0.0);
        }
        // Ceiling now 60 s: the draw maps linearly onto [FLOOR, 60 s].
        let mut lo = b.clone();
        let mut hi = b.clone();
        let mut mid = b.clone();
        assert_eq!(lo.fail(0.0), FLOOR);
        assert_eq!(mid.fail(0.5), Duration::from_secs(30));
        assert_eq!(hi.fail(1.0), Duration::from_secs(60));
        // Out-of-range draws are clamped, never above the cap.
        assert_eq!(b.clone().fail(7.0), CAP);
        assert_eq!(b.fail(-1.0), FLOOR);
        // Many failures: no overflow, still the cap.
        let mut x = Backoff::default();
        for _ in 0..1000 {
            assert!(x.fail(1.0) <= CAP);
        }
    }

    #[test]
    fn jittered_waits_of_many_agents_spread_out() {
        // 1,000 agents failing once with uniform draws: waits spread over [0, 1 s], none
        // above it, and not all in one place (the point of full jitter).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut waits = Vec::new();
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            waits.push(Backoff::default().fail(unit));
        }
        assert!(waits.iter().all(|w| *w <= BASE));
        let early = waits.iter().filter(|w| **w < BASE / 2).count();
        assert!(
            (300..700).contains(&early),
            "{early} of 1000 in the first half"
        );
    }

    #[test]
    fn retry_after_is_never_early_and_bounded() {
        let a = Duration::from_secs(10);
        assert_eq!(retry_after(a, 0.0), a);
        assert_eq!(retry_after(a, 1.0), Duration::from_secs(15));
        assert!(retry_after(a, 0.3) >= a);
        assert_eq!(
            retry_after(Duration::from_secs(100_000), 0.0),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn servers_rotate_on_failure_and_skip_a_busy_one() {
        let urls: Vec<String> = vec!["wss://a:1".into(), "wss://b:1".into(), "wss://a:1".into()];
        let mut s = Servers::new(&urls);
        assert_eq!(s.len(), 2, "duplicates removed");
        assert_eq!(s.current(), "wss://a:1");
        s.failed();
        assert_eq!(s.current(), "wss://b:1");
        s.failed();
        assert_eq!(s.current(), "wss://a:1");
        // a asks for 30 s: b is tried after the ordinary backoff.
        let now = Instant::now();
        s.busy_until(now + Duration::from_secs(30));
        assert_eq!(s.current(), "wss://b:1");
        assert_eq!(
            s.wait(Duration::from_millis(700), now),
            Duration::from_millis(700)
        );
        assert_eq!(s.current(), "wss://b:1");
        // b fails: a is next in turn but busy; b is free again, so b it is.
        s.failed();
        assert_eq!(
            s.wait(Duration::from_millis(300), now),
            Duration::from_millis(300)
        );
        assert_eq!(s.current(), "wss://b:1");
        // Both busy: the one free first, after its delay.
        s.busy_until(now + Duration::from_secs(10));
        let w = s.wait(Duration::from_millis(100), now);
        assert_eq!(s.current(), "wss://b:1");
        assert_eq!(w, Duration::from_secs(10));
        // Once a's time has come, it is free again.
        let later = now + Duration::from_secs(31);
        assert_eq!(
            s.wait(Duration::from_millis(100), later),
            Duration::from_millis(100)
        );
        s.connected();
        assert_eq!(
            s.wait(Duration::from_millis(5), later),
            Duration::from_millis(5)
        );
    }

    #[test]
    fn a_single_server_that_asks_for_a_delay_is_waited_for() {
        let mut s = Servers::new(&["wss://only:1".to_string()]);
        let now = Instant::now();
        s.busy_until(now + Duration::from_secs(20));
        assert_eq!(s.current(), "wss://only:1");
        assert_eq!(s.wait(Duration::from_secs(1), now), Duration::from_secs(20));
        assert_eq!(
            s.wait(Duration::from_secs(1), now + Duration::from_secs(25)),
            Duration::from_secs(1)
        );
    }
}
