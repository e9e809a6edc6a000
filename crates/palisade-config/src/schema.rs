//! The configuration schema: one struct per section, with a doc comment per field, and the
//! semantic checks that serde cannot express.

use crate::{parse_duration, Locator, Problem};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Top-level sections accepted.
pub const SECTIONS: &[&str] = &[
    "general",
    "store",
    "defaults",
    "escalation",
    "recidive",
    "allowlist",
    "responder",
    "jail",
    "notify",
    "abuseipdb",
    "report",
    "server",
];

/// Responder kinds accepted in `[[responder]] type`.
pub const RESPONDER_TYPES: &[&str] = &["nftables", "ipset", "ufw", "command", "log"];

/// A duration as written in the file (`"10m"`, `"1w"`, or seconds as an integer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Dur(Duration::from_secs(n))),
            Raw::S(s) => parse_duration(&s)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A ban length: a duration, or `"forever"` / `"permanent"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanTime(pub Option<Duration>);

impl<'de> Deserialize<'de> for BanTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(BanTime(Some(Duration::from_secs(n)))),
            Raw::S(s) if s == "forever" || s == "permanent" => Ok(BanTime(None)),
            Raw::S(s) => parse_duration(&s)
                .map(|d| BanTime(Some(d)))
                .map_err(|e| serde::de::Error::custom(format!("{e}, or \"forever\""))),
        }
    }
}

/// `[general]`: process-wide settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// Folder for saved log offsets and journald cursors.
    pub state_dir: String,
    /// Control socket used by `palisade decisions`, `palisade status`.
    pub socket: String,
    /// Record every decision as simulated; nothing is enforced.
    pub dry_run: bool,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`); `RUST_LOG` overrides.
    pub log_level: String,
    /// Time zone for log timestamps without one (`"system"`, or an IANA name).
    pub timezone: String,
    /// Longest log line kept, in bytes; longer lines are cut and counted.
    pub max_line: usize,
}

impl Default for General {
    fn default() -> Self {
        General {
            state_dir: "/var/lib/palisade".into(),
            socket: "/run/palisade/palisade.sock".into(),
            dry_run: false,
            log_level: "info".into(),
            timezone: "system".into(),
            max_line: 16 * 1024,
        }
    }
}

/// `[store]`: where events, decisions and history are kept.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `sqlite:/path/palisade.db` (default) or `postgres://user@host/db`.
    pub url: String,
    /// Read the PostgreSQL password from this file instead of the URL.
    pub password_file: Option<String>,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: "sqlite:/var/lib/palisade/palisade.db".into(),
            password_file: None,
        }
    }
}

/// `[defaults]`: detection settings every jail inherits.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Failures that trigger a ban.
    pub max_retry: u32,
    /// Window in which failures are counted.
    pub find_time: Dur,
    /// Ban length (before escalation).
    pub ban_time: BanTime,
    /// IPv6 offenders are counted and banned per network of this prefix (128 = per address).
    pub ipv6_prefix: u8,
    /// Bound on addresses tracked per jail (about 64 bytes each).
    pub max_keys: usize,
    /// Responders used by jails that name none.
    pub responders: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            max_retry: 5,
            find_time: Dur(Duration::from_secs(600)),
            ban_time: BanTime(Some(Duration::from_secs(3600))),
            ipv6_prefix: 64,
            max_keys: 100_000,
            responders: vec!["nftables".into()],
        }
    }
}

/// `[escalation]`: longer bans for repeat offenders.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationSection {
    /// Turn escalation on.
    pub enabled: bool,
    /// The n-th ban lasts `ban_time × factor^n`.
    pub factor: f64,
    /// Longest escalated ban.
    pub max: Dur,
    /// Bans older than this are forgotten.
    pub window: Dur,
}

impl Default for EscalationSection {
    fn default() -> Self {
        EscalationSection {
            enabled: true,
            factor: 2.0,
            max: Dur(Duration::from_secs(7 * 86400)),
            window: Dur(Duration::from_secs(7 * 86400)),
        }
    }
}

/// `[recidive]`: a long ban for addresses banned repeatedly, by any jail.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecidiveSection {
    /// Turn the recidive jail on.
    pub enabled: bool,
    /// Bans that trigger it.
    pub max_retry: u32,
    /// Window over which bans are counted.
    pub find_time: Dur,
    /// Its ban length.
    pub ban_time: BanTime,
}

impl Default for RecidiveSection {
    fn default() -> Self {
        RecidiveSection {
            enabled: true,
            max_retry: 3,
            find_time: Dur(Duration::from_secs(86400)),
            ban_time: BanTime(Some(Duration::from_secs(7 * 86400))),
        }
    }
}

/// `[allowlist]`: addresses never banned.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AllowlistSection {
    /// Addresses and CIDR networks.
    pub addresses: Vec<Spanned<String>>,
    /// Files with one address or network per line (`#` comments).
    pub files: Vec<Spanned<String>>,
    /// Parsed entries (filled by validation).
    #[serde(skip)]
    pub parsed: Vec<IpNet>,
}

/// `[[responder]]`: an enforcement point.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponderSection {
    /// Name jails refer to.
    pub name: Spanned<String>,
    /// One of `nftables`, `ipset`, `ufw`, `command`, `log`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// nftables: table name (family `inet`), default `palisade`.
    pub table: Option<String>,
    /// nftables: input hook priority, default -10.
    pub priority: Option<i32>,
    /// nftables/ipset/ufw: only drop traffic to these ports (default: all traffic).
    pub ports: Option<Vec<u16>>,
    /// nftables: also drop forwarded traffic.
    pub forward: Option<bool>,
    /// nftables/ipset: run the firewall commands inside this network namespace.
    pub netns: Option<String>,
    /// command: argv run per ban, with `{ip}`, `{cidr}`, `{jail}`, `{duration}`, `{family}`.
    pub ban: Option<Vec<String>>,
    /// command: argv run per unban.
    pub unban: Option<Vec<String>>,
    /// command: time limit per run.
    pub timeout: Option<Dur>,
}

/// `[[jail]]`: a filter over some logs, with its thresholds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JailSection {
    /// Unique name.
    pub name: Spanned<String>,
    /// Set to false to keep the jail but not run it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Built-in filter (`sshd`, `nginx_access`, `apache_access`, `nginx_error`,
    /// `apache_error`, `kernel_fw`).
    pub filter: Option<Spanned<String>>,
    /// Or: a fail2ban filter file (`/etc/fail2ban/filter.d/sshd.conf`).
    pub filter_file: Option<Spanned<String>>,
    /// Filter options (`mode = "aggressive"`, fail2ban `[Init]` values).
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// Log files or globs to follow.
    #[serde(default)]
    pub files: Vec<String>,
    /// Or: follow journald, with these matches (`_SYSTEMD_UNIT=ssh.service`); `[]` = all.
    pub journal: Option<Vec<String>>,
    /// Or: read standard input.
    #[serde(default)]
    pub stdin: bool,
    /// Overrides `[defaults] max_retry`.
    pub max_retry: Option<u32>,
    /// Overrides `[defaults] find_time`.
    pub find_time: Option<Dur>,
    /// Overrides `[defaults] ban_time`.
    pub ban_time: Option<BanTime>,
    /// Overrides `[defaults] ipv6_prefix`.
    pub ipv6_prefix: Option<u8>,
    /// Overrides `[defaults] max_keys`.
    pub max_keys: Option<usize>,
    /// Overrides `[defaults] responders`.
    pub responders: Option<Vec<Spanned<String>>>,
    /// Simulate this jail only.
    #[serde(default)]
    pub dry_run: bool,
}

fn yes() -> bool {
    true
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `[general]`.
    pub general: General,
    /// `[store]`.
    pub store: StoreSection,
    /// `[defaults]`.
    pub defaults: Defaults,
    /// `[escalation]` (absent = off).
    pub escalation: Option<EscalationSection>,
    /// `[recidive]` (absent = off).
    pub recidive: Option<RecidiveSection>,
    /// `[allowlist]`.
    pub allowlist: AllowlistSection,
    /// `[[responder]]` sections.
    pub responders: Vec<ResponderSection>,
    /// `[[jail]]` sections.
    pub jails: Vec<JailSection>,
    /// `[notify]` (absent = no notifications).
    pub notify: Option<NotifySection>,
    /// `[abuseipdb]` (absent = no reporting).
    pub abuseipdb: Option<AbuseIpDbSection>,
    /// `[report]` (absent = defaults, no scheduled digest).
    pub report: Option<ReportSection>,
    /// `[server]` (absent = no HTTP API or dashboard).
    pub server: Option<ServerSection>,
}

/// Responders every configuration has without declaring them.
pub const IMPLICIT_RESPONDERS: &[(&str, &str)] = &[("nftables", "nftables"), ("log", "log")];

impl Config {
    /// The responder section by name (implicit ones come back as a default section).
    pub fn responder(&self, name: &str) -> Option<ResponderSection> {
        if let Some(r) = self.responders.iter().find(|r| r.name.get_ref() == name) {
            return Some(r.clone());
        }
        IMPLICIT_RESPONDERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, k)| ResponderSection {
                name: Spanned::new(0..0, n.to_string()),
                kind: Spanned::new(0..0, k.to_string()),
                table: None,
                priority: None,
                ports: None,
                forward: None,
                netns: None,
                ban: None,
                unban: None,
                timeout: None,
            })
    }

    /// Responder names a jail uses.
    pub fn jail_responders(&self, j: &JailSection) -> Vec<String> {
        match &j.responders {
            Some(v) => v.iter().map(|s| s.get_ref().clone()).collect(),
            None => self.defaults.responders.clone(),
        }
    }
}

pub(crate) fn validate(
    cfg: &mut Config,
    loc: &Locator<'_>,
    known_filters: &[&str],
    problems: &mut Vec<Problem>,
) {
    // Allowlist entries and files.
    let mut parsed = Vec::new();
    for a in &cfg.allowlist.addresses {
        match palisade_core::Allowlist::parse_entry(a.get_ref()) {
            Some(n) => parsed.push(n),
            None => problems.push(loc.span(
                a,
                format!(
                    "allowlist entry {:?} is not an IP address or CIDR network (e.g. \"192.0.2.7\", \"10.0.0.0/8\", \"2001:db8::/32\")",
                    a.get_ref()
                ),
            )),
        }
    }
    for f in cfg.allowlist.files.clone() {
        let path = cfg.resolve(f.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(text) => match palisade_core::Allowlist::parse_text(&text) {
                Ok(v) => parsed.extend(v),
                Err(errs) => {
                    for e in errs {
                        problems.push(Problem {
                            file: path.clone(),
                            line: e.line,
                            col: 1,
                            message: format!("{:?} is not an IP address or CIDR network", e.entry),
                        });
                    }
                }
            },
            Err(e) => problems.push(loc.span(
                &f,
                format!("cannot read allowlist file {}: {e}", path.display()),
            )),
        }
    }
    cfg.allowlist.parsed = parsed;

    if !cfg.store.url.starts_with("sqlite:")
        && !cfg.store.url.starts_with("postgres://")
        && !cfg.store.url.starts_with("postgresql://")
    {
        problems.push(loc.nowhere(format!(
            "[store] url must start with sqlite:, postgres:// or postgresql:// (got {:?})",
            redact_url(&cfg.store.url)
        )));
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&cfg.general.log_level.as_str()) {
        problems.push(loc.nowhere(format!(
            "[general] log_level {:?}: expected error, warn, info, debug or trace",
            cfg.general.log_level
        )));
    }
    if cfg.general.timezone != "system" && jiff_like_tz_invalid(&cfg.general.timezone) {
        problems.push(loc.nowhere(format!(
            "[general] timezone {:?}: expected \"system\" or an IANA name such as \"Europe/Berlin\"",
            cfg.general.timezone
        )));
    }
    if cfg.general.max_line < 256 {
        problems.push(loc.nowhere("[general] max_line must be at least 256 bytes"));
    }
    check_common(
        loc,
        problems,
        "[defaults]",
        cfg.defaults.max_retry,
        cfg.defaults.ipv6_prefix,
        cfg.defaults.max_keys,
    );
    if let Some(e) = &cfg.escalation {
        if !(e.factor >= 1.0 && e.factor <= 100.0) {
            problems.push(loc.nowhere(format!(
                "[escalation] factor {} must be between 1 and 100",
                e.factor
            )));
        }
    }
    if let Some(r) = &cfg.recidive {
        if r.max_retry == 0 {
            problems.push(loc.nowhere("[recidive] max_retry must be at least 1"));
        }
    }

    // Responders.
    let mut names: HashSet<String> = HashSet::new();
    for r in &cfg.responders {
        if !names.insert(r.name.get_ref().clone()) {
            problems.push(loc.span(
                &r.name,
                format!("responder {:?} is defined twice", r.name.get_ref()),
            ));
        }
        let kind = r.kind.get_ref().as_str();
        if !RESPONDER_TYPES.contains(&kind) {
            problems.push(loc.span(
                &r.kind,
                format!(
                    "unknown responder type {kind:?}; expected one of: {}",
                    RESPONDER_TYPES.join(", ")
                ),
            ));
            continue;
        }
        let only = |field: &str, present: bool, allowed: &[&str], problems: &mut Vec<Problem>| {
            if present && !allowed.contains(&kind) {
                problems.push(loc.span(
                    &r.name,
                    format!(
                        "responder {:?}: `{field}` is only for type {} (this one is {kind})",
                        r.name.get_ref(),
                        allowed.join("/")
                    ),
                ));
            }
        };
        only("table", r.table.is_some(), &["nftables"], problems);
        only("priority", r.priority.is_some(), &["nftables"], problems);
        only("forward", r.forward.is_some(), &["nftables"], problems);
        only(
            "ports",
            r.ports.is_some(),
            &["nftables", "ipset", "ufw"],
            problems,
        );
        only("netns", r.netns.is_some(), &["nftables", "ipset"], problems);
        only("ban", r.ban.is_some(), &["command"], problems);
        only("unban", r.unban.is_some(), &["command"], problems);
        only("timeout", r.timeout.is_some(), &["command"], problems);
        if kind == "command" {
            match &r.ban {
                None => problems.push(loc.span(
                    &r.name,
                    format!(
                        "responder {:?}: type command needs `ban = [\"/absolute/program\", \"arg\", \"{{ip}}\"]`",
                        r.name.get_ref()
                    ),
                )),
                Some(argv) => check_argv(loc, problems, r, "ban", argv),
            }
            if let Some(argv) = &r.unban {
                check_argv(loc, problems, r, "unban", argv);
            }
        }
        if let Some(t) = &r.table {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problems.push(loc.span(
                    &r.name,
                    format!("responder {:?}: table name {t:?} may only hold letters, digits, '_' and '-'", r.name.get_ref()),
                ));
            }
        }
    }
    let known_responder =
        |n: &str| names.contains(n) || IMPLICIT_RESPONDERS.iter().any(|(i, _)| *i == n);
    for n in &cfg.defaults.responders {
        if !known_responder(n) {
            problems.push(loc.nowhere(format!(
                "[defaults] responders: no responder named {n:?} (declare it with [[responder]])"
            )));
        }
    }

    // Jails.
    let mut jails: HashSet<String> = HashSet::new();
    for j in &cfg.jails {
        let name = j.name.get_ref();
        if !jails.insert(name.clone()) {
            problems.push(loc.span(&j.name, format!("jail {name:?} is defined twice")));
        }
        if name.is_empty()
            || name == "manual"
            || name == "recidive"
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            problems.push(loc.span(
                &j.name,
                format!("jail name {name:?}: use letters, digits, '_', '-', '.'; \"manual\" and \"recidive\" are reserved"),
            ));
        }
        match (&j.filter, &j.filter_file) {
            (Some(f), None) => {
                if !known_filters.contains(&f.get_ref().as_str()) {
                    problems.push(loc.span(
                        f,
                        format!(
                            "jail {name:?}: unknown filter {:?}; {}built-in filters: {} (or use filter_file = \"/etc/fail2ban/filter.d/NAME.conf\")",
                            f.get_ref(),
                            crate::did_you_mean(f.get_ref(), known_filters.iter().copied())
                                .map_or(String::new(), |s| format!("did you mean {s:?}? ")),
                            known_filters.join(", ")
                        ),
                    ));
                }
            }
            (None, Some(f)) => {
                let p = cfg.resolve(f.get_ref());
                if !p.is_file() {
                    problems.push(loc.span(
                        f,
                        format!("jail {name:?}: filter_file {} does not exist", p.display()),
                    ));
                }
            }
            (Some(f), Some(_)) => problems.push(loc.span(
                f,
                format!("jail {name:?}: give either `filter` or `filter_file`, not both"),
            )),
            (None, None) => problems.push(loc.span(
                &j.name,
                format!("jail {name:?}: missing `filter` (built-in name) or `filter_file`"),
            )),
        }
        if let Some(m) = j.options.get("mode") {
            if j.filter.is_some() && !["normal", "aggressive"].contains(&m.as_str()) {
                problems.push(loc.span(
                    &j.name,
                    format!(
                        "jail {name:?}: options.mode {m:?}: expected \"normal\" or \"aggressive\""
                    ),
                ));
            }
        }
        if j.filter.is_some() {
            for k in j.options.keys() {
                if k != "mode" {
                    problems.push(loc.span(
                        &j.name,
                        format!("jail {name:?}: unknown option {k:?} for a built-in filter; allowed: mode"),
                    ));
                }
            }
        }
        let sources = (!j.files.is_empty()) as u8 + j.journal.is_some() as u8 + j.stdin as u8;
        if sources != 1 {
            problems.push(loc.span(
                &j.name,
                format!("jail {name:?}: give exactly one source: `files = [\"/var/log/auth.log\"]`, `journal = [\"_SYSTEMD_UNIT=ssh.service\"]` or `stdin = true`"),
            ));
        }
        check_common(
            loc,
            problems,
            &format!("jail {name:?}"),
            j.max_retry.unwrap_or(cfg.defaults.max_retry),
            j.ipv6_prefix.unwrap_or(cfg.defaults.ipv6_prefix),
            j.max_keys.unwrap_or(cfg.defaults.max_keys),
        );
        if let Some(rs) = &j.responders {
            for r in rs {
                if !known_responder(r.get_ref()) {
                    problems.push(loc.span(
                        r,
                        format!("jail {name:?}: no responder named {:?} (declare it with [[responder]]; implicit: nftables, log)", r.get_ref()),
                    ));
                }
            }
        }
    }
    if cfg.jails.iter().filter(|j| j.stdin && j.enabled).count() > 1 {
        problems.push(loc.nowhere("only one jail can read standard input"));
    }
    validate_report_sections(cfg, loc, problems);
}

fn check_argv(
    loc: &Locator<'_>,
    problems: &mut Vec<Problem>,
    r: &ResponderSection,
    field: &str,
    argv: &[String],
) {
    const PH: &[&str] = &["ip", "cidr", "jail", "duration", "family"];
    let name = r.name.get_ref();
    match argv.first() {
        None => problems.push(loc.span(&r.name, format!("responder {name:?}: `{field}` is empty"))),
        Some(p) if !p.starts_with('/') || p.contains('{') => problems.push(loc.span(
            &r.name,
            format!("responder {name:?}: `{field}` program {p:?} must be an absolute path without placeholders (it is run directly, never through a shell)"),
        )),
        _ => {}
    }
    for a in argv {
        let mut rest = a.as_str();
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else {
                problems.push(loc.span(
                    &r.name,
                    format!("responder {name:?}: unclosed '{{' in {a:?}"),
                ));
                break;
            };
            let ph = &rest[i + 1..i + j];
            if !PH.contains(&ph) {
                problems.push(loc.span(
                    &r.name,
                    format!("responder {name:?}: unknown placeholder {{{ph}}} in {a:?}; allowed: {{ip}}, {{cidr}}, {{jail}}, {{duration}}, {{family}}"),
                ));
            }
            rest = &rest[i + j + 1..];
        }
    }
}

fn check_common(
    loc: &Locator<'_>,
    problems: &mut Vec<Problem>,
    what: &str,
    max_retry: u32,
    prefix: u8,
    max_keys: usize,
) {
    if max_retry == 0 {
        problems.push(loc.nowhere(format!("{what}: max_retry must be at least 1")));
    }
    if !(16..=128).contains(&prefix) {
        problems.push(loc.nowhere(format!(
            "{what}: ipv6_prefix {prefix} must be between 16 and 128 (64 is usual)"
        )));
    }
    if max_keys < 16 {
        problems.push(loc.nowhere(format!("{what}: max_keys must be at least 16")));
    }
}

fn jiff_like_tz_invalid(tz: &str) -> bool {
    // Full validation happens when the time zone database is consulted at start; here we
    // only reject what can never be a zone name.
    tz.is_empty() || tz.contains("..") || tz.starts_with('/') || tz.contains(char::is_whitespace)
}

/// Hides the password of a URL for messages (`postgres://u:***@h/db`).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = cred.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

// --- report sections ([notify], [abuseipdb], [report]) ---

/// A secret from the configuration (password, API key): `Debug` never shows it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// `[notify]`: messages about decisions, aggregated and throttled.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySection {
    /// Bans decided within this window are sent together in one message.
    pub window: Dur,
    /// At most this many messages per hour per channel; what is held back is summarised in
    /// the next message allowed.
    pub max_per_hour: u32,
    /// A target already reported is not reported again within this time.
    pub dedup: Dur,
    /// Also report lifted bans.
    pub unbans: bool,
    /// Also report simulated (dry-run) decisions.
    pub simulated: bool,
    /// E-mail channel (`[notify.email]`).
    pub email: Option<EmailSection>,
    /// Web hook channel (`[notify.webhook]`).
    pub webhook: Option<WebhookSection>,
    /// JSON-lines file channel: one object per decision appended to this file.
    pub file: Option<String>,
}

impl Default for NotifySection {
    fn default() -> Self {
        NotifySection {
            window: Dur(Duration::from_secs(60)),
            max_per_hour: 12,
            dedup: Dur(Duration::from_secs(3600)),
            unbans: false,
            simulated: true,
            email: None,
            webhook: None,
            file: None,
        }
    }
}

/// `[notify.email]`: SMTP delivery.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// SMTP server host name.
    pub smtp_host: String,
    /// SMTP port (default: 587 for `starttls`, 465 for `tls`, 25 for `none`).
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS), or `none` (plain text; local relays only).
    #[serde(default = "default_tls")]
    pub tls: String,
    /// SMTP user name (with `password` or `password_file`).
    pub username: Option<String>,
    /// SMTP password.
    pub password: Option<SecretString>,
    /// Or: read the SMTP password from this file.
    pub password_file: Option<String>,
    /// PEM file of certificate authorities trusted for the SMTP server's certificate, in
    /// addition to the built-in Mozilla roots (a private CA or a self-signed relay).
    pub ca_file: Option<String>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Put before every subject.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Time limit of one delivery.
    #[serde(default = "default_net_timeout")]
    pub timeout: Dur,
}

fn default_tls() -> String {
    "starttls".into()
}
fn default_subject_prefix() -> String {
    "[palisade]".into()
}
fn default_net_timeout() -> Dur {
    Dur(Duration::from_secs(15))
}

/// `[notify.webhook]`: an HTTP POST of a JSON body.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// `https://…` (or `http://` for a local receiver).
    pub url: SecretString,
    /// Body shape: `json` (Palisade's own), `slack` (`{"text": …}`), `discord`
    /// (`{"content": …}`).
    #[serde(default = "default_webhook_format")]
    pub format: String,
    /// Time limit of one POST.
    #[serde(default = "default_net_timeout")]
    pub timeout: Dur,
}

fn default_webhook_format() -> String {
    "json".into()
}

/// `[abuseipdb]`: report banned addresses to AbuseIPDB.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseIpDbSection {
    /// API key.
    pub api_key: Option<SecretString>,
    /// Or: read the API key from this file.
    pub api_key_file: Option<String>,
    /// Report endpoint.
    pub endpoint: String,
    /// Jail name → AbuseIPDB category numbers; jails not listed use built-in guesses from
    /// the jail's name (sshd → 18, 22; web jails → 21, 15), else `default_categories`.
    pub categories: std::collections::BTreeMap<String, Vec<u8>>,
    /// Categories when nothing else applies.
    pub default_categories: Vec<u8>,
    /// Most reports sent per UTC day (the free plan allows 1000).
    pub daily_quota: u32,
    /// The same address is reported at most once per this interval (AbuseIPDB refuses
    /// reports of one address more often than every 15 minutes).
    pub min_interval: Dur,
    /// Also report simulated (dry-run) decisions.
    pub simulated: bool,
    /// Time limit of one request.
    pub timeout: Dur,
}

impl Default for AbuseIpDbSection {
    fn default() -> Self {
        AbuseIpDbSection {
            api_key: None,
            api_key_file: None,
            endpoint: "https://api.abuseipdb.com/api/v2/report".into(),
            categories: Default::default(),
            default_categories: vec![18],
            daily_quota: 1000,
            min_interval: Dur(Duration::from_secs(900)),
            simulated: false,
            timeout: Dur(Duration::from_secs(15)),
        }
    }
}

/// `[report]`: the digest (`palisade report`) and `palisade analyze` settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    /// Send the digest every day at this local time (`"07:00"`) from the daemon; absent = never.
    pub daily_at: Option<String>,
    /// Period the digest covers.
    pub period: Dur,
    /// Addresses listed in tables.
    pub top: usize,
    /// MaxMind-format country database (`.mmdb`) for countries; absent = look in the usual
    /// places, none found = no countries.
    pub geoip_db: Option<String>,
    /// `palisade analyze`: suspicious hits from which an address is proposed for blocking.
    pub threshold: u64,
    /// `palisade analyze`: suspicious hits from which a log is yellow, red, critical.
    pub levels: [u64; 3],
}

impl Default for ReportSection {
    fn default() -> Self {
        ReportSection {
            daily_at: None,
            period: Dur(Duration::from_secs(86400)),
            top: 20,
            geoip_db: None,
            threshold: 100,
            levels: [100, 500, 1000],
        }
    }
}

/// Parses `HH:MM` (24-hour clock) into (hour, minute).
pub fn parse_time_of_day(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.trim().len() <= 5).then_some((h, m))
}

/// Semantic checks of `[notify]`, `[abuseipdb]` and `[report]`.
pub(crate) fn validate_report_sections(
    cfg: &Config,
    loc: &Locator<'_>,
    problems: &mut Vec<Problem>,
) {
    if let Some(n) = &cfg.notify {
        if n.max_per_hour == 0 {
            problems.push(loc.nowhere("[notify] max_per_hour must be at least 1"));
        }
        if let Some(e) = &n.email {
            if !["starttls", "tls", "none"].contains(&e.tls.as_str()) {
                problems.push(loc.nowhere(format!(
                    "[notify.email] tls {:?}: expected \"starttls\", \"tls\" or \"none\"",
                    e.tls
                )));
            }
            if e.to.is_empty() {
                problems.push(loc.nowhere("[notify.email] to: give at least one recipient"));
            }
            if e.password.is_some() && e.password_file.is_some() {
                problems
                    .push(loc.nowhere("[notify.email] give either `password` or `password_file`"));
            }
            if e.ca_file.is_some() && e.tls == "none" {
                problems.push(loc.nowhere(
                    "[notify.email] ca_file needs tls = \"starttls\" or \"tls\" (with tls = \"none\" no certificate is checked)",
                ));
            }
            if e.username.is_none() && (e.password.is_some() || e.password_file.is_some()) {
                problems.push(loc.nowhere(
                    "[notify.email] a password needs `username` (the account to log in as)",
                ));
            }
        }
        if let Some(w) = &n.webhook {
            if !["json", "slack", "discord"].contains(&w.format.as_str()) {
                problems.push(loc.nowhere(format!(
                    "[notify.webhook] format {:?}: expected \"json\", \"slack\" or \"discord\"",
                    w.format
                )));
            }
            if !(w.url.0.starts_with("https://") || w.url.0.starts_with("http://")) {
                problems
                    .push(loc.nowhere("[notify.webhook] url must start with https:// or http://"));
            }
        }
    }
    if let Some(a) = &cfg.abuseipdb {
        if a.api_key.is_some() == a.api_key_file.is_some() {
            problems
                .push(loc.nowhere("[abuseipdb] give exactly one of `api_key` or `api_key_file`"));
        }
        let bad: Vec<u8> = a
            .categories
            .values()
            .flatten()
            .chain(&a.default_categories)
            .copied()
            .filter(|c| !(1..=23).contains(c))
            .collect();
        if !bad.is_empty() {
            problems.push(loc.nowhere(format!(
                "[abuseipdb] categories {bad:?}: AbuseIPDB categories are 1 to 23"
            )));
        }
    }
    if let Some(r) = &cfg.report {
        if let Some(t) = &r.daily_at {
            if parse_time_of_day(t).is_none() {
                problems.push(loc.nowhere(format!(
                    "[report] daily_at {t:?}: expected a 24-hour time such as \"07:00\""
                )));
            }
        }
        if !(r.levels[0] <= r.levels[1] && r.levels[1] <= r.levels[2]) {
            problems
                .push(loc.nowhere("[report] levels must be increasing: [yellow, red, critical]"));
        }
    }
}

// --- server section ([server]) ---

/// Default GeoIP country database (where `scripts/install-geoip.sh` puts DB-IP Lite).
pub const DEFAULT_GEOIP_COUNTRY: &str = "/var/lib/palisade/geoip/dbip-country.mmdb";

/// `[server]`: the HTTP API and dashboard served by `palisade run`. A present section is
/// enabled unless it says `enabled = false`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Serve the API and dashboard.
    pub enabled: bool,
    /// Address and port to listen on (`127.0.0.1:9380`); keep it on loopback unless TLS is
    /// configured or a TLS proxy is in front.
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain for HTTPS (needs `tls_key`).
    pub tls_cert: Option<String>,
    /// PEM private key for HTTPS (needs `tls_cert`).
    pub tls_key: Option<String>,
    /// GeoIP country database (`.mmdb`: DB-IP Lite or GeoLite2-Country); missing = no geo.
    pub geoip_country: Option<String>,
    /// GeoIP city database (`.mmdb`, e.g. GeoLite2-City); adds city and coordinates.
    pub geoip_city: Option<String>,
    /// GeoIP ASN database (`.mmdb`, e.g. GeoLite2-ASN); adds the network operator.
    pub geoip_asn: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9380)),
            tls_cert: None,
            tls_key: None,
            geoip_country: Some(DEFAULT_GEOIP_COUNTRY.into()),
            geoip_city: None,
            geoip_asn: None,
        }
    }
}
// --- end server section ---
