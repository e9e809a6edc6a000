//! Timestamp parsing for log lines: fast, allocation-free, with a per-hour UTC-offset cache.
//!
//! Supported forms (each parser takes the bytes where the timestamp starts and returns the
//! instant and the number of bytes consumed):
//!
//! * RFC 3164 syslog `Mmm dd HH:MM:SS` (local time; the year is inferred from `now`),
//! * RFC 3339 / ISO 8601 `2025-03-03T10:00:00.123456+01:00`, `…Z`, `…+0100`, a space instead
//!   of `T`, `/` instead of `-` (nginx error log `2025/03/03 10:00:00`); without a zone the
//!   time is local,
//! * common/combined log `10/Oct/2000:13:55:36 -0700`,
//! * apache error log `Wed Oct 11 14:32:52.123456 2000` (local time).
//!
//! Local times are converted with the [`TimeZone`] given at construction. The UTC offset of
//! each local hour is computed once with jiff and cached, so the hot path does no time-zone
//! lookups per line.

use jiff::tz::TimeZone;
use palisade_core::Timestamp;

const CACHE: usize = 32;
/// Marks a cache slot whose hour contains an offset transition (computed per line instead).
const MIXED: i32 = i32::MIN;

/// Parses timestamps, converting local times with one time zone.
#[derive(Clone, Debug)]
pub struct TimeParser {
    tz: TimeZone,
    /// Direct-mapped cache: local hour number (local seconds / 3600) → UTC offset seconds.
    cache: [(i64, i32); CACHE],
}

impl Default for TimeParser {
    fn default() -> Self {
        TimeParser::new(TimeZone::system())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil year of a day number (inverse of [`days_from_civil`], year only).
pub fn year_of_days(z: i64) -> i64 {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Month number (1..=12) of an English three-letter abbreviation (case as logged: `Mar`).
#[inline]
pub fn month(b: &[u8]) -> Option<u32> {
    if b.len() < 3 {
        return None;
    }
    let k = [b[0] | 0x20, b[1] | 0x20, b[2] | 0x20];
    Some(match &k {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// `HH:MM:SS` at the start of `b`, validated (second 60 allowed for leap seconds).
#[inline]
fn hms(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let h = crate::scan::digits_n(b, 2)?;
    let m = crate::scan::digits_n(&b[3..], 2)?;
    let s = crate::scan::digits_n(&b[6..], 2)?;
    (h < 24 && m < 60 && s <= 60).then_some((h, m, s))
}

/// Optional `.ffffff` fraction at the start of `b`: (microseconds, bytes consumed).
#[inline]
fn fraction(b: &[u8]) -> (i64, usize) {
    if b.first() != Some(&b'.') && b.first() != Some(&b',') {
        return (0, 0);
    }
    let n = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return (0, 0);
    }
    let mut us = 0i64;
    for i in 0..6 {
        us = us * 10 + if i < n { i64::from(b[1 + i] - b'0') } else { 0 };
    }
    (us, 1 + n)
}

/// Zone designator at the start of `b`: `Z`, `+HH:MM`, `+HHMM`, `+HH`: (offset seconds,
/// bytes consumed), `None` if there is no zone.
#[inline]
fn zone(b: &[u8]) -> Option<(i32, usize)> {
    match b.first()? {
        b'Z' | b'z' => Some((0, 1)),
        &c @ (b'+' | b'-') => {
            let h = crate::scan::digits_n(&b[1..], 2)?;
            let (m, used) = if b.get(3) == Some(&b':') {
                (crate::scan::digits_n(&b[4..], 2)?, 6)
            } else if let Some(m) = crate::scan::digits_n(&b[3..], 2) {
                (m, 5)
            } else {
                (0, 3)
            };
            if h > 23 || m > 59 {
                return None;
            }
            let off = (h * 3600 + m * 60) as i32;
            Some((if c == b'-' { -off } else { off }, used))
        }
        _ => None,
    }
}

fn valid_date(y: i64, mo: u32, d: u32) -> bool {
    (1..=12).contains(&mo) && d >= 1 && d <= days_in_month(y, mo)
}

impl TimeParser {
    /// A parser converting local times with `tz`.
    pub fn new(tz: TimeZone) -> Self {
        TimeParser {
            tz,
            cache: [(i64::MIN, 0); CACHE],
        }
    }

    /// The time zone used for local times.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// UTC offset (seconds) for a local wall-clock time given as seconds since the local
    /// epoch. Cached per local hour; hours that contain a transition are computed exactly.
    fn offset_of_local(&mut self, local: i64) -> i32 {
        let hour = local.div_euclid(3600);
        let slot = hour.rem_euclid(CACHE as i64) as usize;
        let (k, off) = self.cache[slot];
        if k == hour && off != MIXED {
            return off;
        }
        let a = self.offset_exact(hour * 3600);
        let b = self.offset_exact(hour * 3600 + 3599);
        if a == b {
            self.cache[slot] = (hour, a);
            a
        } else {
            self.cache[slot] = (hour, MIXED);
            self.offset_exact(local)
        }
    }

    /// Offset via jiff: ambiguous local times (DST fold) take the earlier instant, local
    /// times in a gap are moved forward (jiff's "compatible" disambiguation).
    fn offset_exact(&self, local: i64) -> i32 {
        let Ok(civil) = jiff::Timestamp::from_second(local) else {
            return 0;
        };
        let dt = civil.to_zoned(TimeZone::UTC).datetime();
        match self.tz.to_ambiguous_timestamp(dt).compatible() {
            Ok(ts) => (local - ts.as_second()) as i32,
            Err(_) => 0,
        }
    }

    /// Converts a local civil time to an instant.
    pub fn local_to_utc(
        &mut self,
        y: i64,
        mo: u32,
        d: u32,
        h: u32,
        mi: u32,
        s: u32,
        us: i64,
    ) -> Timestamp {
        let local = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s);
        let off = self.offset_of_local(local);
        Timestamp((local - i64::from(off)) * Timestamp::MICROS + us)
    }

    /// RFC 3164 `Mmm dd HH:MM:SS[.frac]` (day space- or zero-padded; the fraction is
    /// `journalctl -o short-precise`). The year is the latest one that does not put the time
    /// more than one day after `now` (so December lines read in January land in the previous
    /// year). Returns the instant and bytes consumed (15 plus the fraction).
    pub fn parse_rfc3164(&mut self, b: &[u8], now: Timestamp) -> Option<(Timestamp, usize)> {
        if b.len() < 15 || b[3] != b' ' || b[6] != b' ' {
            return None;
        }
        let mo = month(b)?;
        let d = match (b[4], b[5]) {
            (b' ', c) if c.is_ascii_digit() => u32::from(c - b'0'),
            (a, c) if a.is_ascii_digit() && c.is_ascii_digit() => {
                u32::from((a - b'0') * 10 + (c - b'0'))
            }
            _ => return None,
        };
        let (h, mi, s) = hms(&b[7..])?;
        if !(1..=31).contains(&d) {
            return None;
        }
        let limit = now.0 + 86_400 * Timestamp::MICROS;
        let y0 = year_of_days(now.secs().div_euclid(86_400)) + 1;
        // Feb 29 may need to go back up to 8 years to find a leap year.
        for y in (y0 - 8..=y0).rev() {
            if !valid_date(y, mo, d) {
                continue;
            }
            // No zone is more than 14 h ahead of UTC: skip clearly-future years without a
            // time-zone lookup.
            let local = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s);
            if (local - 14 * 3600) * Timestamp::MICROS > limit {
                continue;
            }
            let (us, fl) = fraction(&b[15..]);
            let t = self.local_to_utc(y, mo, d, h, mi, s, us);
            if t.0 <= limit {
                return Some((t, 15 + fl));
            }
        }
        None
    }

    /// RFC 3339 / ISO 8601: `YYYY-MM-DD[T ]HH:MM:SS[.frac][zone]`, `-` or `/` in the date.
    /// Without a zone the time is local.
    pub fn parse_rfc3339(&mut self, b: &[u8]) -> Option<(Timestamp, usize)> {
        if b.len() < 19 {
            return None;
        }
        let sep = b[4];
        if (sep != b'-' && sep != b'/')
            || b[7] != sep
            || !(b[10] == b'T' || b[10] == b' ' || b[10] == b't')
        {
            return None;
        }
        let y = i64::from(crate::scan::digits_n(b, 4)?);
        let mo = crate::scan::digits_n(&b[5..], 2)?;
        let d = crate::scan::digits_n(&b[8..], 2)?;
        if !valid_date(y, mo, d) {
            return None;
        }
        let (h, mi, s) = hms(&b[11..])?;
        let (us, fl) = fraction(&b[19..]);
        let mut used = 19 + fl;
        let t = match zone(&b[used..]) {
            Some((off, zl)) => {
                used += zl;
                let local = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s);
                Timestamp((local - i64::from(off)) * Timestamp::MICROS + us)
            }
            None => self.local_to_utc(y, mo, d, h, mi, s, us),
        };
        Some((t, used))
    }

    /// Common log format time `10/Oct/2000:13:55:36 -0700` (inside the brackets).
    pub fn parse_clf(&mut self, b: &[u8]) -> Option<(Timestamp, usize)> {
        if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
            return None;
        }
        let d = crate::scan::digits_n(b, 2)?;
        let mo = month(&b[3..])?;
        let y = i64::from(crate::scan::digits_n(&b[7..], 4)?);
        if !valid_date(y, mo, d) {
            return None;
        }
        let (h, mi, s) = hms(&b[12..])?;
        let (us, fl) = fraction(&b[20..]);
        let mut used = 20 + fl;
        if b.get(used) == Some(&b' ') {
            if let Some((off, zl)) = zone(&b[used + 1..]) {
                used += 1 + zl;
                let local = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s);
                return Some((
                    Timestamp((local - i64::from(off)) * Timestamp::MICROS + us),
                    used,
                ));
            }
        }
        Some((self.local_to_utc(y, mo, d, h, mi, s, us), used))
    }

    /// Apache error log time `Wed Oct 11 14:32:52.123456 2000` (local time).
    pub fn parse_apache_error(&mut self, b: &[u8]) -> Option<(Timestamp, usize)> {
        if b.len() < 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' {
            return None;
        }
        let mo = month(&b[4..])?;
        let d = match (b[8], b[9]) {
            (b' ', c) if c.is_ascii_digit() => u32::from(c - b'0'),
            (a, c) if a.is_ascii_digit() && c.is_ascii_digit() => {
                u32::from((a - b'0') * 10 + (c - b'0'))
            }
            _ => return None,
        };
        let (h, mi, s) = hms(&b[11..])?;
        let (us, fl) = fraction(&b[19..]);
        let p = 19 + fl;
        if b.get(p) != Some(&b' ') {
            return None;
        }
        let y = i64::from(crate::scan::digits_n(&b[p + 1..], 4)?);
        if !valid_date(y, mo, d) {
            return None;
        }
        Some((self.local_to_utc(y, mo, d, h, mi, s, us), p + 5))
    }

    /// Any of the syslog header forms: RFC 3164 or RFC 3339 (rsyslog high precision).
    pub fn parse_syslog(&mut self, b: &[u8], now: Timestamp) -> Option<(Timestamp, usize)> {
        if b.first().is_some_and(u8::is_ascii_digit) {
            self.parse_rfc3339(b)
        } else {
            self.parse_rfc3164(b, now)
        }
    }

    /// The timestamp of a split syslog header ([`crate::syslog::Header::stamp`]). `None`
    /// for a nil RFC 5424 stamp or impossible values.
    pub fn parse_stamp(
        &mut self,
        kind: crate::syslog::StampKind,
        b: &[u8],
        now: Timestamp,
    ) -> Option<Timestamp> {
        use crate::syslog::StampKind;
        match kind {
            StampKind::Rfc3164 => self.parse_rfc3164(b, now).map(|t| t.0),
            StampKind::Iso => self.parse_rfc3339(b).map(|t| t.0),
            StampKind::ShortFull => {
                // `YYYY-MM-DD HH:MM:SS[.frac][ ZONE]`: journalctl prints local time with the
                // zone's abbreviation, which is ambiguous (`IST`, `CST`); only UTC is taken
                // from it, anything else is read in the configured zone.
                let (t, n) = self.parse_rfc3339(b)?;
                let z = b.get(n + 1..).unwrap_or_default();
                if matches!(z, b"UTC" | b"GMT" | b"Z" | b"+00" | b"+0000") {
                    let (_, fl) = fraction(&b[19..]);
                    let mut utc = b[..19 + fl].to_owned();
                    utc.push(b'Z');
                    return self.parse_rfc3339(&utc).map(|t| t.0);
                }
                Some(t)
            }
            StampKind::Unix => {
                let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
                if n == 0 || n > 12 {
                    return None;
                }
                let mut secs = 0i64;
                for &c in &b[..n] {
                    secs = secs * 10 + i64::from(c - b'0');
                }
                let (us, _) = fraction(&b[n..]);
                Some(Timestamp(secs * Timestamp::MICROS + us))
            }
            StampKind::Nil => None,
        }
    }
}

/// A journald `__REALTIME_TIMESTAMP` (microseconds since the epoch, decimal) as a timestamp.
pub fn journald_micros(b: &[u8]) -> Option<Timestamp> {
    if b.is_empty() || b.len() > 18 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v = 0i64;
    for &c in b {
        v = v * 10 + i64::from(c - b'0');
    }
    Some(Timestamp(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn utc() -> TimeParser {
        TimeParser::new(TimeZone::UTC)
    }

    #[test]
    fn civil_roundtrip() {
        for y in [1969i64, 1970, 2000, 2024, 2025, 2100] {
            let d = days_from_civil(y, 3, 1);
            assert_eq!(year_of_days(d), y);
            assert_eq!(year_of_days(days_from_civil(y, 12, 31)), y);
            assert_eq!(year_of_days(days_from_civil(y, 1, 1)), y);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn rfc3164_year_inference() {
        let mut p = utc();
        let now = ts("2025-03-05T12:00:00Z");
        assert_eq!(
            p.parse_rfc3164(b"Mar  3 10:00:00 host", now).unwrap().0,
            ts("2025-03-03T10:00:00Z")
        );
        assert_eq!(
            p.parse_rfc3164(b"Mar 03 10:00:00", now).unwrap().0,
            ts("2025-03-03T10:00:00Z")
        );
        // Tomorrow is allowed (clock skew), later dates belong to last year.
        assert_eq!(
            p.parse_rfc3164(b"Mar  6 11:00:00", now).unwrap().0,
            ts("2025-03-06T11:00:00Z")
        );
        assert_eq!(
            p.parse_rfc3164(b"Mar  7 11:00:00", now).unwrap().0,
            ts("2024-03-07T11:00:00Z")
        );
        // December lines read on New Year's day.
        let jan = ts("2026-01-01T00:05:00Z");
        assert_eq!(
            p.parse_rfc3164(b"Dec 31 23:59:59", jan).unwrap().0,
            ts("2025-12-31T23:59:59Z")
        );
        assert_eq!(
            p.parse_rfc3164(b"Jan  1 00:04:00", jan).unwrap().0,
            ts("2026-01-01T00:04:00Z")
        );
        // A January line read on Dec 31 (writer's clock ahead) stays in the next year.
        let dec = ts("2025-12-31T23:30:00Z");
        assert_eq!(
            p.parse_rfc3164(b"Jan  1 00:10:00", dec).unwrap().0,
            ts("2026-01-01T00:10:00Z")
        );
        // Feb 29 goes back to the last leap year.
        assert_eq!(
            p.parse_rfc3164(b"Feb 29 01:00:00", now).unwrap().0,
            ts("2024-02-29T01:00:00Z")
        );
        assert!(p.parse_rfc3164(b"Foo  3 10:00:00", now).is_none());
        assert!(p.parse_rfc3164(b"Mar 32 10:00:00", now).is_none());
        assert!(p.parse_rfc3164(b"Mar  3 25:00:00", now).is_none());
        assert!(p.parse_rfc3164(b"Mar  3 10:00", now).is_none());
    }

    #[test]
    fn rfc3339_forms() {
        let mut p = utc();
        let (t, n) = p
            .parse_rfc3339(b"2025-03-03T10:00:00.123456+01:00 host")
            .unwrap();
        assert_eq!(t, ts("2025-03-03T09:00:00.123456Z"));
        assert_eq!(n, 32);
        assert_eq!(
            p.parse_rfc3339(b"2025-03-03T10:00:00Z").unwrap().0,
            ts("2025-03-03T10:00:00Z")
        );
        assert_eq!(
            p.parse_rfc3339(b"2025-03-03T10:00:00.5-0130").unwrap().0,
            ts("2025-03-03T11:30:00.5Z")
        );
        assert_eq!(
            p.parse_rfc3339(b"2025-03-03 10:00:00,25").unwrap().0,
            ts("2025-03-03T10:00:00.25Z")
        );
        assert_eq!(
            p.parse_rfc3339(b"2025/03/03 10:00:00 [error]").unwrap(),
            (ts("2025-03-03T10:00:00Z"), 19)
        );
        assert_eq!(
            p.parse_rfc3339(b"2025-03-03T10:00:00.1234567891Z")
                .unwrap()
                .0,
            ts("2025-03-03T10:00:00.123456Z")
        );
        assert!(p.parse_rfc3339(b"2025-02-30T10:00:00Z").is_none());
        assert!(p.parse_rfc3339(b"2025-03-03X10:00:00Z").is_none());
    }

    #[test]
    fn clf_and_apache_error() {
        let mut p = utc();
        assert_eq!(
            p.parse_clf(b"10/Oct/2000:13:55:36 -0700]").unwrap(),
            (ts("2000-10-10T20:55:36Z"), 26)
        );
        assert_eq!(
            p.parse_clf(b"03/Mar/2025:00:00:00 +0000]").unwrap().0,
            ts("2025-03-03T00:00:00Z")
        );
        assert_eq!(
            p.parse_apache_error(b"Wed Oct 11 14:32:52.123456 2000] [x]")
                .unwrap(),
            (ts("2000-10-11T14:32:52.123456Z"), 31)
        );
        assert_eq!(
            p.parse_apache_error(b"Sun Dec 04 04:47:44 2005]")
                .unwrap()
                .0,
            ts("2005-12-04T04:47:44Z")
        );
        assert!(p.parse_apache_error(b"Sun Dec 04 04:47:44 20x5]").is_none());
    }

    #[test]
    fn time_zones_and_dst() {
        let mut p = TimeParser::new(TimeZone::get("Europe/Berlin").unwrap());
        let now = ts("2025-12-01T00:00:00Z");
        assert_eq!(
            p.parse_rfc3164(b"Mar  3 10:00:00", now).unwrap().0,
            ts("2025-03-03T09:00:00Z")
        );
        assert_eq!(
            p.parse_rfc3164(b"Jul  3 10:00:00", now).unwrap().0,
            ts("2025-07-03T08:00:00Z")
        );
        // Spring forward: 02:30 does not exist on 2025-03-30; it is moved forward.
        assert_eq!(
            p.parse_rfc3164(b"Mar 30 01:59:59", now).unwrap().0,
            ts("2025-03-30T00:59:59Z")
        );
        assert_eq!(
            p.parse_rfc3164(b"Mar 30 03:00:00", now).unwrap().0,
            ts("2025-03-30T01:00:00Z")
        );
        // Fall back: 02:30 happens twice on 2025-10-26; the earlier instant is taken.
        assert_eq!(
            p.parse_rfc3164(b"Oct 26 02:30:00", now).unwrap().0,
            ts("2025-10-26T00:30:00Z")
        );
        assert_eq!(
            p.parse_rfc3164(b"Oct 26 03:30:00", now).unwrap().0,
            ts("2025-10-26T02:30:00Z")
        );
        // The cache gives the same answers on the second pass.
        assert_eq!(
            p.parse_rfc3164(b"Jul  3 10:00:00", now).unwrap().0,
            ts("2025-07-03T08:00:00Z")
        );
        // Explicit zones are not affected by the configured zone.
        assert_eq!(
            p.parse_rfc3339(b"2025-07-03T10:00:00Z").unwrap().0,
            ts("2025-07-03T10:00:00Z")
        );
        // Zone-less ISO time (nginx error log) is local.
        assert_eq!(
            p.parse_rfc3339(b"2025/07/03 10:00:00").unwrap().0,
            ts("2025-07-03T08:00:00Z")
        );
        // POSIX TZ strings.
        let mut q = TimeParser::new(TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap());
        assert_eq!(
            q.parse_rfc3164(b"Jan 10 12:00:00", now).unwrap().0,
            ts("2025-01-10T17:00:00Z")
        );
        assert_eq!(
            q.parse_rfc3164(b"Jun 10 12:00:00", now).unwrap().0,
            ts("2025-06-10T16:00:00Z")
        );
        // Half-hour zone.
        let mut k = TimeParser::new(TimeZone::get("Asia/Kolkata").unwrap());
        assert_eq!(
            k.parse_rfc3164(b"Jun 10 12:00:00", now).unwrap().0,
            ts("2025-06-10T06:30:00Z")
        );
    }

    #[test]
    fn journald() {
        assert_eq!(
            journald_micros(b"1741000000123456"),
            Some(Timestamp(1_741_000_000_123_456))
        );
        assert_eq!(journald_micros(b"12a"), None);
    }
}
