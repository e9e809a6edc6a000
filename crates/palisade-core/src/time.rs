//! Time as Palisade sees it: UTC microseconds since the Unix epoch, and an injectable clock.
//!
//! Detection runs on *event time* (the timestamp parsed from the log line), so a replay of a
//! file reproduces the decisions taken live. Wall-clock time is only used through [`Clock`].

use std::fmt;

/// An instant: microseconds since 1970-01-01T00:00:00Z. Cheap to copy and compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Microseconds in one second.
    pub const MICROS: i64 = 1_000_000;

    /// From whole seconds since the epoch.
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s * Self::MICROS)
    }

    /// Whole seconds since the epoch (floored).
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(Self::MICROS)
    }

    /// Microseconds since the epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// This instant moved by `d` (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(d.as_micros().min(i64::MAX as u128) as i64),
        )
    }

    /// This instant moved back by `d` (saturating).
    pub fn minus(self, d: std::time::Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(d.as_micros().min(i64::MAX as u128) as i64),
        )
    }

    /// Duration from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// Converts to a `jiff::Timestamp` (clamped to jiff's range).
    pub fn to_jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_microsecond(self.0).unwrap_or(if self.0 < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        })
    }

    /// From a `jiff::Timestamp`.
    pub fn from_jiff(t: jiff::Timestamp) -> Self {
        Timestamp(t.as_microsecond())
    }

    /// Parses RFC 3339 (`2025-03-03T10:00:00Z`, `2025-03-03T10:00:00.5+01:00`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, jiff::Error> {
        s.parse::<jiff::Timestamp>().map(Self::from_jiff)
    }

    /// RFC 3339 in UTC, with fractional seconds only when present.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_jiff())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Source of "now". Injected everywhere wall-clock time matters, so tests and replays are
/// deterministic.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_jiff(jiff::Timestamp::now())
    }
}

/// A clock frozen at one instant (tests, `--now`).
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// Longest duration accepted anywhere (configuration, `decisions add --duration`, the API):
/// 10 years. Longer is an error; a permanent ban is written `"forever"` (or omitted on the
/// command line). `palisade record` maps longer bans (fail2ban's `bantime.increment`) to
/// permanent ones instead.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2025-03-03T10:00:00.250+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-03-03T09:00:00.25Z");
        assert_eq!(Timestamp::from_secs(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(t.secs(), 1740992400);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_secs(10);
        assert_eq!(t.plus(std::time::Duration::from_secs(5)).secs(), 15);
        assert_eq!(t.since(Timestamp::from_secs(20)), std::time::Duration::ZERO);
        assert_eq!(
            Timestamp(i64::MAX)
                .plus(std::time::Duration::from_secs(1))
                .0,
            i64::MAX
        );
    }
}
