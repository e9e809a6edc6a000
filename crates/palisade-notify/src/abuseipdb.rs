//! Reports banned addresses to AbuseIPDB (`[abuseipdb]`).
//!
//! An [`Observer`] like the notifier: the engine thread only queues; one background thread
//! keeps the last evidence lines per address, and on a ban posts one report
//! (`POST endpoint`, header `Key`, form fields `ip`, `categories`, `comment`, `timestamp`).
//!
//! Limits: one report per address per `min_interval` (AbuseIPDB's own rule is 15 minutes),
//! at most `daily_quota` reports per UTC day, never for networks, private, loopback or other
//! non-global addresses, nor (by default) for simulated decisions. After a `429 Too Many
//! Requests` nothing is sent until the next UTC day.
//!
//! The comment is built from the decision and up to three evidence lines, sanitised: only
//! printable ASCII, this host's name replaced by `[host]`, e-mail addresses by `[email]`,
//! cut to 1000 characters.

use crate::mail::hostname;
use crate::secret::Secret;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use palisade_config::Config;
use palisade_core::Observer;
use palisade_core::{Clock, Decision, Event, Timestamp};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Queue from the engine.
const QUEUE: usize = 8192;
/// Addresses whose evidence is kept.
const EVIDENCE_IPS: usize = 10_000;
/// Evidence lines kept per address.
const EVIDENCE_LINES: usize = 3;
/// Longest comment sent.
pub const MAX_COMMENT: usize = 1000;

/// Problems building the reporter.
#[derive(Debug, thiserror::Error)]
pub enum AbuseError {
    /// The API key is missing or unreadable.
    #[error("[abuseipdb]: {0}")]
    Config(String),
}

/// Built-in category guesses by jail name (AbuseIPDB category numbers).
pub fn guess_categories(jail: &str) -> Option<Vec<u8>> {
    let j = jail.to_ascii_lowercase();
    let has = |w: &[&str]| w.iter().any(|x| j.contains(x));
    if has(&["ssh"]) {
        Some(vec![18, 22])
    } else if has(&["badbot", "bad-bot", "bad_bot"]) {
        Some(vec![19])
    } else if has(&[
        "nginx",
        "apache",
        "http",
        "web",
        "wordpress",
        "wp",
        "php",
        "scan",
        "analyze",
    ]) {
        Some(vec![21, 15])
    } else if has(&["ftp"]) {
        Some(vec![5, 18])
    } else if has(&["postfix", "smtp", "dovecot", "mail", "imap", "pop3", "sasl"]) {
        Some(vec![18, 11])
    } else if has(&["portscan", "kernel", "firewall"]) {
        Some(vec![14])
    } else {
        None
    }
}

/// Sanitises text for the public comment (see the module documentation).
pub fn sanitize_comment(s: &str, host: &str) -> String {
    let mut t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    if host.len() >= 3 {
        t = t.replace(host, "[host]");
    }
    // E-mail addresses (user@domain.tld) become [email].
    let words: Vec<String> = t
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let at = w.find('@');
            match at {
                Some(i) if i > 0 && w[i + 1..].contains('.') => "[email]".to_string(),
                _ => w.to_string(),
            }
        })
        .collect();
    let mut out = words.join(" ");
    if out.len() > MAX_COMMENT {
        out.truncate(MAX_COMMENT);
    }
    out
}

/// Whether AbuseIPDB should hear about `ip` (globally routable only).
pub fn reportable(ip: IpAddr) -> bool {
    match palisade_core::canonical_ip(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// Settings of the reporter.
#[derive(Clone, Debug)]
pub struct Settings {
    /// API key.
    pub key: Secret,
    /// Report endpoint.
    pub endpoint: String,
    /// Jail → categories.
    pub categories: BTreeMap<String, Vec<u8>>,
    /// Fallback categories.
    pub default_categories: Vec<u8>,
    /// Reports per UTC day.
    pub daily_quota: u32,
    /// Per-address interval.
    pub min_interval: Duration,
    /// Report simulated decisions.
    pub simulated: bool,
    /// Request time limit.
    pub timeout: Duration,
}

enum Msg {
    Evidence(IpAddr, Box<str>),
    Ban(Decision),
    Flush(Sender<()>),
}

/// Counters of what the reporter did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Reports accepted by the API.
    pub sent: AtomicU64,
    /// Reports the API refused or that failed.
    pub failed: AtomicU64,
    /// Skipped: reported within `min_interval`.
    pub rate_limited: AtomicU64,
    /// Skipped: daily quota used up (or a 429).
    pub over_quota: AtomicU64,
    /// Skipped: network, non-global address or simulated.
    pub skipped: AtomicU64,
    /// Lost: the queue was full.
    pub dropped: AtomicU64,
}

/// The reporter: an [`Observer`] feeding a background thread.
pub struct AbuseReporter {
    tx: Sender<Msg>,
    simulated: bool,
    /// What it did so far.
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for AbuseReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbuseReporter")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl AbuseReporter {
    /// Starts the background thread.
    pub fn start(s: Settings, clock: Arc<dyn Clock>) -> Arc<AbuseReporter> {
        let (tx, rx) = bounded(QUEUE);
        let counters = Arc::new(Counters::default());
        let simulated = s.simulated;
        let w = Worker {
            agent: ureq::AgentBuilder::new().timeout(s.timeout).build(),
            s,
            clock,
            evidence: HashMap::new(),
            order: VecDeque::new(),
            last: HashMap::new(),
            day: i64::MIN,
            used: 0,
            blocked_day: None,
            host: hostname(),
            counters: counters.clone(),
        };
        let _ = std::thread::Builder::new()
            .name("palisade-abuseipdb".into())
            .spawn(move || w.run(rx));
        Arc::new(AbuseReporter {
            tx,
            simulated,
            counters,
        })
    }

    /// Waits until everything queued so far is handled.
    pub fn flush(&self) {
        let (t, r) = bounded(1);
        if self.tx.send(Msg::Flush(t)).is_ok() {
            let _ = r.recv_timeout(Duration::from_secs(60));
        }
    }

    fn push(&self, m: Msg) {
        if self.tx.try_send(m).is_err() {
            self.counters.dropped.fetch_add(1, Relaxed);
        }
    }
}

impl Observer for AbuseReporter {
    fn event(&self, _jail: &str, e: &Event) {
        self.push(Msg::Evidence(e.ip, e.evidence.clone()));
    }

    fn ban(&self, d: &Decision) {
        if d.simulated && !self.simulated {
            self.counters.skipped.fetch_add(1, Relaxed);
            return;
        }
        self.push(Msg::Ban(d.clone()));
    }
}

struct Worker {
    s: Settings,
    agent: ureq::Agent,
    clock: Arc<dyn Clock>,
    evidence: HashMap<IpAddr, VecDeque<Box<str>>>,
    order: VecDeque<IpAddr>,
    last: HashMap<IpAddr, Timestamp>,
    day: i64,
    used: u32,
    blocked_day: Option<i64>,
    host: String,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Msg::Evidence(ip, line)) => self.keep(ip, line),
                Ok(Msg::Ban(d)) => self.report(&d),
                Ok(Msg::Flush(t)) => {
                    let _ = t.send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn keep(&mut self, ip: IpAddr, line: Box<str>) {
        if !self.evidence.contains_key(&ip) {
            if self.order.len() >= EVIDENCE_IPS {
                if let Some(old) = self.order.pop_front() {
                    self.evidence.remove(&old);
                }
            }
            self.order.push_back(ip);
        }
        let v = self.evidence.entry(ip).or_default();
        if v.len() >= EVIDENCE_LINES {
            v.pop_front();
        }
        v.push_back(line);
    }

    fn categories(&self, jail: &str) -> Vec<u8> {
        self.s
            .categories
            .get(jail)
            .cloned()
            .or_else(|| guess_categories(jail))
            .unwrap_or_else(|| self.s.default_categories.clone())
    }

    fn comment(&self, d: &Decision, ip: IpAddr) -> String {
        let mut c = format!(
            "Banned by Palisade, jail {} ({}): {}",
            d.jail, d.origin, d.reason
        );
        if let Some(ev) = self.evidence.get(&ip) {
            c.push_str(" | evidence: ");
            let lines: Vec<&str> = ev.iter().map(|l| &**l).collect();
            c.push_str(&lines.join(" | "));
        }
        sanitize_comment(&c, &self.host)
    }

    fn report(&mut self, d: &Decision) {
        let single = d.target.prefix_len() == d.target.max_prefix_len();
        let ip = palisade_core::canonical_ip(d.target.addr());
        if !single || !reportable(ip) {
            self.counters.skipped.fetch_add(1, Relaxed);
            return;
        }
        let now = self.clock.now();
        let day = now.secs().div_euclid(86_400);
        if day != self.day {
            self.day = day;
            self.used = 0;
            // Forget per-address times that no longer matter.
            let iv = self.s.min_interval;
            self.last.retain(|_, t| now.since(*t) < iv);
        }
        if let Some(t) = self.last.get(&ip) {
            if now.since(*t) < self.s.min_interval {
                self.counters.rate_limited.fetch_add(1, Relaxed);
                return;
            }
        }
        if self.used >= self.s.daily_quota || self.blocked_day == Some(day) {
            self.counters.over_quota.fetch_add(1, Relaxed);
            return;
        }
        self.used += 1;
        self.last.insert(ip, now);
        let cats: Vec<String> = self
            .categories(&d.jail)
            .iter()
            .map(|c| c.to_string())
            .collect();
        let comment = self.comment(d, ip);
        let ts = d.created.to_jiff().to_string();
        let ip_s = ip.to_string();
        let cats_s = cats.join(",");
        let r = self
            .agent
            .post(&self.s.endpoint)
            .set("Key", self.s.key.expose())
            .set("Accept", "application/json")
            .set(
                "User-Agent",
                concat!("palisade/", env!("CARGO_PKG_VERSION")),
            )
            .send_form(&[
                ("ip", ip_s.as_str()),
                ("categories", cats_s.as_str()),
                ("comment", comment.as_str()),
                ("timestamp", ts.as_str()),
            ]);
        match r {
            Ok(_) => {
                self.counters.sent.fetch_add(1, Relaxed);
                tracing::info!(ip = %ip, "reported to AbuseIPDB");
            }
            Err(ureq::Error::Status(429, _)) => {
                self.blocked_day = Some(day);
                self.counters.failed.fetch_add(1, Relaxed);
                tracing::warn!("AbuseIPDB: rate limit reached (429); no more reports today");
            }
            Err(e) => {
                self.counters.failed.fetch_add(1, Relaxed);
                tracing::warn!(ip = %ip, error = %self.s.key.scrub(&e.to_string()), "AbuseIPDB report failed");
            }
        }
    }
}

/// Builds the reporter from `[abuseipdb]`; `None` when the section is absent.
pub fn build_reporter(cfg: &Config) -> Result<Option<Arc<AbuseReporter>>, AbuseError> {
    build_reporter_with(cfg, Arc::new(palisade_core::SystemClock))
}

/// [`build_reporter`] with an injected clock.
pub fn build_reporter_with(
    cfg: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<AbuseReporter>>, AbuseError> {
    let Some(a) = &cfg.abuseipdb else {
        return Ok(None);
    };
    let key = Secret::from_config(
        a.api_key.as_ref(),
        a.api_key_file.as_deref().map(|p| cfg.resolve(p)).as_deref(),
    )
    .map_err(|e| AbuseError::Config(format!("reading api_key_file: {e}")))?
    .filter(|k| !k.is_empty())
    .ok_or_else(|| AbuseError::Config("no API key (api_key or api_key_file)".into()))?;
    Ok(Some(AbuseReporter::start(
        Settings {
            key,
            endpoint: a.endpoint.clone(),
            categories: a.categories.clone(),
            default_categories: a.default_categories.clone(),
            daily_quota: a.daily_quota,
            min_interval: a.min_interval.0,
            simulated: a.simulated,
            timeout: a.timeout.0,
        },
        clock,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_is_sanitised() {
        let c = sanitize_comment(
            "Failed password for bob@example.com from 1.2.3.4 on web01\u{1b}[31m \u{202e}x",
            "web01",
        );
        assert_eq!(
            c,
            "Failed password for [email] from 1.2.3.4 on [host] [31m x"
        );
        assert!(sanitize_comment(&"a".repeat(5000), "h").len() <= MAX_COMMENT);
    }

    #[test]
    fn only_global_addresses() {
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "127.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "100.64.0.1",
        ] {
            assert!(!reportable(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2a02:1:2:3::4"] {
            assert!(reportable(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn categories() {
        assert_eq!(guess_categories("sshd"), Some(vec![18, 22]));
        assert_eq!(guess_categories("nginx-scan"), Some(vec![21, 15]));
        assert_eq!(guess_categories("custom"), None);
    }
}
