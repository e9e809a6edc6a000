//! The fail2ban bridge (kept next to the rest of fail2ban compatibility): `palisade record IP PROTOCOL PORT FAILURES TIME` as fail2ban's
//! `actionban` calls it. Every argument comes from fail2ban's tag substitution, which may carry
//! text an attacker influenced, so each one is parsed strictly and refused with a clear message.

use palisade_core::{canonical_ip, Decision, Origin, Timestamp};
use std::net::IpAddr;
use std::time::Duration;

/// How far in the future fail2ban's `<time>` may be (clock skew between hosts).
pub const MAX_FUTURE: Duration = Duration::from_secs(300);
/// Earliest `<time>` accepted (2001-09-09): anything before is a broken clock or garbage.
pub const MIN_TIME: i64 = 1_000_000_000;

/// A refused argument.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{arg} {value:?}: {why}")]
pub struct RecordError {
    /// Which argument.
    pub arg: &'static str,
    /// What was given (control characters replaced).
    pub value: String,
    /// What is expected.
    pub why: String,
}

fn err(arg: &'static str, value: &str, why: impl Into<String>) -> RecordError {
    RecordError {
        arg,
        value: value
            .chars()
            .take(80)
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect(),
        why: why.into(),
    }
}

/// Transport protocol as fail2ban's `<protocol>` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
    /// `icmp`.
    Icmp,
    /// `all`.
    All,
}

impl Protocol {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }
}

/// A validated `palisade record` invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The offender.
    pub ip: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Port ranges (inclusive); a single port is `(p, p)`.
    pub ports: Vec<(u16, u16)>,
    /// fail2ban's failure count.
    pub failures: u32,
    /// When fail2ban banned.
    pub time: Timestamp,
    /// fail2ban jail name.
    pub jail: String,
    /// Ban length; `None` = permanent (fail2ban `bantime = -1`).
    pub bantime: Option<Duration>,
}

/// Parses the IP argument: one address (IPv4-mapped IPv6 becomes IPv4); not a network, not
/// an unspecified, multicast or broadcast address.
pub fn parse_ip(s: &str) -> Result<IpAddr, RecordError> {
    let ip: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| err("IP", s, "expected one IPv4 or IPv6 address"))?;
    let ip = canonical_ip(ip);
    let bad = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if bad {
        return Err(err(
            "IP",
            s,
            "an unspecified, multicast or broadcast address cannot be banned",
        ));
    }
    Ok(ip)
}

/// Parses `tcp`, `udp`, `icmp` or `all` (any case).
pub fn parse_protocol(s: &str) -> Result<Protocol, RecordError> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" | "ipv6-icmp" | "icmpv6" => Protocol::Icmp,
        "all" => Protocol::All,
        _ => return Err(err("PROTOCOL", s, "expected tcp, udp, icmp or all")),
    })
}

/// Well-known service names fail2ban jails use for `port`, when `/etc/services` lacks them.
const SERVICES: &[(&str, u16)] = &[
    ("ssh", 22),
    ("ftp", 21),
    ("ftp-data", 20),
    ("smtp", 25),
    ("submission", 587),
    ("submissions", 465),
    ("smtps", 465),
    ("http", 80),
    ("https", 443),
    ("pop3", 110),
    ("pop3s", 995),
    ("imap", 143),
    ("imap2", 143),
    ("imaps", 993),
    ("domain", 53),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("sieve", 4190),
    ("ldap", 389),
    ("ldaps", 636),
    ("sip", 5060),
    ("openvpn", 1194),
    ("rdp", 3389),
];

fn service_port(name: &str) -> Option<u16> {
    let lower = name.to_ascii_lowercase();
    if let Ok(text) = std::fs::read_to_string("/etc/services") {
        for l in text.lines() {
            let l = l.split('#').next().unwrap_or("");
            let mut it = l.split_whitespace();
            let (Some(svc), Some(pp)) = (it.next(), it.next()) else {
                continue;
            };
            if svc.eq_ignore_ascii_case(&lower) || it.any(|a| a.eq_ignore_ascii_case(&lower)) {
                if let Some(p) = pp.split('/').next().and_then(|p| p.parse().ok()) {
                    return Some(p);
                }
            }
        }
    }
    SERVICES.iter().find(|(n, _)| *n == lower).map(|(_, p)| *p)
}

/// Parses fail2ban's `<port>`: a comma list of ports, ranges (`1000:2000` as iptables writes
/// them, or `1000-2000`) and service names (`ssh`, `http,https`).
pub fn parse_ports(s: &str) -> Result<Vec<(u16, u16)>, RecordError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(err(
            "PORT",
            s,
            "empty; expected e.g. 22, ssh, 80,443 or 0:65535",
        ));
    }
    if t.len() > 512 {
        return Err(err("PORT", s, "too long"));
    }
    let one = |p: &str| -> Result<u16, RecordError> {
        let p = p.trim();
        if p.is_empty() {
            return Err(err("PORT", s, "empty item in the list"));
        }
        if p.bytes().all(|b| b.is_ascii_digit()) {
            return p
                .parse::<u16>()
                .map_err(|_| err("PORT", s, "ports are 0 to 65535"));
        }
        if p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        {
            return service_port(p)
                .ok_or_else(|| err("PORT", s, format!("unknown service name {p:?}")));
        }
        Err(err(
            "PORT",
            s,
            "expected port numbers, ranges (1000:2000) or service names, separated by commas",
        ))
    };
    let mut out = Vec::new();
    for item in t.split(',') {
        let item = item.trim();
        let range = item.split_once(':').or_else(|| {
            item.split_once('-')
                .filter(|(a, _)| a.bytes().all(|b| b.is_ascii_digit()))
        });
        match range {
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                if a > b {
                    return Err(err("PORT", s, format!("range {a}:{b} runs backwards")));
                }
                out.push((a, b));
            }
            None => {
                let p = one(item)?;
                out.push((p, p));
            }
        }
    }
    Ok(out)
}

/// Parses the failure count (a non-negative integer).
pub fn parse_failures(s: &str) -> Result<u32, RecordError> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| err("FAILURES", s, "expected a whole number (0 to 4294967295)"))
}

/// Parses fail2ban's `<time>`: Unix seconds, possibly with a fraction (`1710000000.25`); not
/// before 2001 and not more than [`MAX_FUTURE`] after `now`.
pub fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp, RecordError> {
    let t = s.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 12
    {
        return Err(err(
            "TIME",
            s,
            "expected Unix seconds as fail2ban passes <time> (e.g. 1710000000 or 1710000000.25)",
        ));
    }
    let secs: i64 = int.parse().map_err(|_| err("TIME", s, "not a number"))?;
    let mut micros = 0i64;
    for (i, d) in frac.bytes().take(6).enumerate() {
        micros += i64::from(d - b'0') * 10i64.pow(5 - i as u32);
    }
    let ts = Timestamp(secs * Timestamp::MICROS + micros);
    if secs < MIN_TIME {
        return Err(err("TIME", s, "before 2001: not a plausible ban time"));
    }
    if ts > now.plus(MAX_FUTURE) {
        return Err(err(
            "TIME",
            s,
            format!("{} is in the future (now is {now})", ts),
        ));
    }
    Ok(ts)
}

/// Parses fail2ban's `<bantime>`: seconds (a fraction is rounded up), `-1` (or any negative)
/// for permanent. A ban longer than [`palisade_core::MAX_DURATION`] (what
/// `bantime.increment` hands over after many bans) is recorded as permanent.
pub fn parse_bantime(s: &str) -> Result<Option<Duration>, RecordError> {
    parse_bantime_unbounded(s).map(|d| d.filter(|d| *d <= palisade_core::MAX_DURATION))
}

fn parse_bantime_unbounded(s: &str) -> Result<Option<Duration>, RecordError> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        return match n {
            n if n < 0 => Ok(None),
            0 => Err(err("--bantime", s, "must be positive, or -1 for permanent")),
            n => Ok(Some(Duration::from_secs(n as u64))),
        };
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() && f > 0.0 {
            if f > palisade_core::MAX_DURATION.as_secs_f64() {
                return Ok(None);
            }
            return Ok(Some(Duration::from_secs(f.ceil() as u64)));
        }
        if f.is_finite() && f < 0.0 {
            return Ok(None);
        }
    }
    // Also `10m`, `1h` (humantime, as durations are written in Palisade's configuration).
    if let Ok(d) = humantime::parse_duration(t) {
        if d.is_zero() {
            return Err(err("--bantime", s, "must be positive, or -1 for permanent"));
        }
        return Ok(Some(d));
    }
    humantime::parse_duration(t).map(Some).map_err(|_| {
        err(
            "--bantime",
            s,
            "expected seconds (600), -1 for permanent, or 10m/1h",
        )
    })
}

/// Checks a fail2ban jail name (letters, digits, `_`, `-`, `.`; at most 64).
pub fn parse_jail(s: &str) -> Result<String, RecordError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(err(
            "--jail",
            s,
            "use 1 to 64 letters, digits, '_', '-' or '.'",
        ))
    }
}

impl Record {
    /// Parses every argument; `bantime` falls back to `default_bantime`.
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        ip: &str,
        protocol: &str,
        port: &str,
        failures: &str,
        time: &str,
        jail: Option<&str>,
        bantime: Option<&str>,
        default_bantime: Option<Duration>,
        now: Timestamp,
    ) -> Result<Record, RecordError> {
        let rec = Record {
            ip: parse_ip(ip)?,
            protocol: parse_protocol(protocol)?,
            ports: parse_ports(port)?,
            failures: parse_failures(failures)?,
            time: parse_time(time, now)?,
            jail: parse_jail(jail.unwrap_or("fail2ban"))?,
            bantime: match bantime {
                Some(b) => parse_bantime(b)?,
                None => default_bantime,
            },
        };
        rec.check_not_over(now)?;
        Ok(rec)
    }

    /// Refuses a ban whose time is already over at `now`.
    pub fn check_not_over(&self, now: Timestamp) -> Result<(), RecordError> {
        match self.bantime {
            Some(d) if self.time.plus(d) <= now => Err(err(
                "TIME",
                &(self.time.secs()).to_string(),
                "the ban is already over (TIME + bantime is in the past)",
            )),
            _ => Ok(()),
        }
    }

    /// Ports as text (`22`, `80,443`, `0:65535`).
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}:{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The decision to record: origin `fail2ban`, the fail2ban jail's name, from `time` for
    /// `bantime`.
    pub fn decision(&self, simulated: bool) -> Decision {
        Decision {
            id: 0,
            target: palisade_core::target_of(self.ip),
            jail: self.jail.clone(),
            origin: Origin::Fail2ban,
            reason: format!(
                "fail2ban jail {}: {} failures ({} port {})",
                self.jail,
                self.failures,
                self.protocol.as_str(),
                self.ports_text()
            ),
            created: self.time,
            expires: self.bantime.map(|d| self.time.plus(d)),
            simulated,
            level: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlong_bantime_is_permanent_and_zero_refused() {
        assert_eq!(
            parse_bantime("600").unwrap(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_bantime("19000000000").unwrap(), None);
        assert_eq!(parse_bantime("1.9e10").unwrap(), None);
        assert_eq!(parse_bantime("-1").unwrap(), None);
        assert_eq!(
            parse_bantime("121000000").unwrap(),
            Some(Duration::from_secs(121_000_000))
        );
        assert!(parse_bantime("0").is_err());
        assert!(parse_bantime("0s").is_err());
    }

    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("22").unwrap(), [(22, 22)]);
        assert_eq!(parse_ports("0:65535").unwrap(), [(0, 65535)]);
        assert_eq!(parse_ports("80, 443").unwrap(), [(80, 80), (443, 443)]);
        assert_eq!(parse_ports("1000-2000").unwrap(), [(1000, 2000)]);
        assert_eq!(parse_ports("ssh").unwrap(), [(22, 22)]);
        for bad in [
            "", "65536", "22;rm", "2:1", "a b", ",", "-1", "22,,23", "$(id)",
        ] {
            assert!(parse_ports(bad).is_err(), "{bad:?}");
        }
    }
}
