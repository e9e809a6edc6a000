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
    "fleet_jail",
    "notify",
    "abuseipdb",
    "report",
    "server",
    "audit",
    "fleet",
];

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
            Raw::N(n) => crate::check_duration(Duration::from_secs(n))
                .map(Dur)
                .map_err(serde::de::Error::custom),
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
            Raw::N(n) => crate::check_ban_duration(Duration::from_secs(n))
                .map(|d| BanTime(Some(d)))
                .map_err(serde::de::Error::custom),
            Raw::S(s) if s == "forever" || s == "permanent" => Ok(BanTime(None)),
            Raw::S(s) => crate::parse_ban_duration(&s)
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
    /// How often the bans in force are applied again to every responder (reconcile), so that
    /// a ban lost by the firewall or whose apply failed for good is restored. 0 turns it off.
    pub reconcile_interval: Dur,
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
            reconcile_interval: Dur(Duration::from_secs(300)),
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
    /// How long events are kept (`"90d"`); older ones are removed by whole UTC days, hourly
    /// and at start. Totals per address (events, failures, bans) are kept forever. `0` keeps
    /// events forever. At least one day and the longest jail `find_time` (the default 90
    /// days is raised to the longest `find_time` when that is longer).
    pub retention: Dur,
}

/// Default `[store] retention`: 90 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86400);

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: "sqlite:/var/lib/palisade/palisade.db".into(),
            password_file: None,
            retention: Dur(DEFAULT_RETENTION),
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
    /// The parsed `addresses` (filled by validation; the `files` are read at build time by
    /// [`Config::allowlist_entries`], which returns these plus theirs).
    #[serde(skip)]
    pub parsed: Vec<IpNet>,
}

/// `[[responder]]`: an enforcement point, with the settings of its type.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponderSection {
    /// Name jails refer to.
    pub name: Spanned<String>,
    /// `type` as written (where it is, for messages); always `spec.kind()`.
    pub kind: Spanned<String>,
    /// The type and its own settings.
    pub spec: ResponderSpec,
}

/// Declares the responder types: the [`ResponderSpec`] enum (serde internally tagged on
/// `type`), [`RESPONDER_TYPES`] and the keys each type accepts. **Adding a responder type is
/// one line here** (plus its section struct below, its module in palisade-respond and one arm
/// in palisade-pipeline's `build_responder`).
macro_rules! responder_types {
    ($( $(#[$m:meta])* $variant:ident($name:literal, $section:ty) ),* $(,)?) => {
        /// A responder's type and its own settings: `type = "nftables" | "ipset" | …`. Each arm
        /// holds only the keys of its type, so a key of another type is an error.
        #[derive(Clone, Debug, Deserialize, PartialEq)]
        #[serde(tag = "type", deny_unknown_fields)]
        pub enum ResponderSpec {
            $( $(#[$m])* #[serde(rename = $name)] $variant($section), )*
        }

        /// Responder kinds accepted in `[[responder]] type`.
        pub const RESPONDER_TYPES: &[&str] = &[$($name),*];

        impl ResponderSpec {
            /// The `type` name.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ResponderSpec::$variant(_) => $name,)*
                }
            }
        }

        /// The keys a responder type accepts besides `name` and `type`.
        pub(crate) fn responder_keys(kind: &str) -> Option<&'static [&'static str]> {
            match kind {
                $($name => Some(crate::fields::struct_fields::<$section>()),)*
                _ => None,
            }
        }
    };
}

responder_types! {
    /// nftables: Palisade's own table, timeout sets (bans expire in the kernel).
    Nftables("nftables", NftablesSection),
    /// ipset sets plus iptables rules.
    Ipset("ipset", IpsetSection),
    /// ufw deny rules.
    Ufw("ufw", UfwSection),
    /// A program run per ban and unban (argv template, never a shell).
    Command("command", CommandSection),
    /// Only logs decisions.
    Log("log", LogSection),
}

/// `type = "nftables"`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NftablesSection {
    /// Table name (family `inet`), default `palisade`.
    pub table: Option<String>,
    /// Input hook priority, default -10.
    pub priority: Option<i32>,
    /// Also drop forwarded traffic.
    pub forward: Option<bool>,
    /// Only drop traffic to these ports (default: all traffic).
    pub ports: Option<Vec<u16>>,
    /// Run the firewall commands inside this network namespace.
    pub netns: Option<String>,
}

/// `type = "ipset"`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpsetSection {
    /// Only drop traffic to these ports (default: all traffic).
    pub ports: Option<Vec<u16>>,
    /// Run the firewall commands inside this network namespace.
    pub netns: Option<String>,
}

/// `type = "ufw"`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UfwSection {
    /// Only deny traffic to these ports (default: all traffic).
    pub ports: Option<Vec<u16>>,
}

/// `type = "command"`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandSection {
    /// argv run per ban, with `{ip}`, `{cidr}`, `{jail}`, `{duration}`, `{family}`
    /// (required; checked by validation so the message can say how to write it).
    pub ban: Option<Vec<String>>,
    /// argv run per unban.
    pub unban: Option<Vec<String>>,
    /// Time limit per run.
    pub timeout: Option<Dur>,
}

/// `type = "log"`: no settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {}

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
    /// Filter options (`mode = "aggressive"`, fail2ban `[Init]` values; for `nginx_access`
    /// and `apache_access` also `log_format` and `trusted_proxies`).
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
    /// `[[fleet_jail]]` sections (correlation on a fleet server).
    pub fleet_jails: Vec<crate::FleetJailSection>,
    /// `[notify]` (absent = no notifications).
    pub notify: Option<NotifySection>,
    /// `[abuseipdb]` (absent = no reporting).
    pub abuseipdb: Option<AbuseIpDbSection>,
    /// `[report]` (absent = defaults, no scheduled digest).
    pub report: Option<ReportSection>,
    /// `[server]` (absent = no HTTP API or dashboard).
    pub server: Option<ServerSection>,
    /// `[audit]`, kept as TOML: the audit crate reads and validates it (`palisade-audit`).
    pub audit: Option<toml::Value>,
    /// `[fleet]` (absent = a single host).
    pub fleet: Option<crate::FleetSection>,
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
                spec: match *k {
                    "nftables" => ResponderSpec::Nftables(NftablesSection::default()),
                    _ => ResponderSpec::Log(LogSection {}),
                },
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

/// The semantic checks serde cannot express. Pure: reads no file (the files a configuration
/// names are read by [`Config::check_files`], at build time).
pub(crate) fn validate(
    cfg: &mut Config,
    loc: &Locator<'_>,
    known_filters: &[&str],
    problems: &mut Vec<Problem>,
) {
    // Inline allowlist entries (files are read at build time: `Config::allowlist_entries`).
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
    let retention = cfg.store.retention.0;
    if !retention.is_zero() {
        let longest_find_time = cfg
            .jails
            .iter()
            .map(|j| j.find_time.map_or(cfg.defaults.find_time.0, |d| d.0))
            .chain(
                cfg.fleet_jails
                    .iter()
                    .map(|j| j.find_time.map_or(cfg.defaults.find_time.0, |d| d.0)),
            )
            .chain([cfg.defaults.find_time.0])
            .max()
            .unwrap_or_default();
        let floor = longest_find_time.max(Duration::from_secs(86400));
        if retention == DEFAULT_RETENTION && retention < floor {
            // The default (not written in the file) follows the longest find_time.
            cfg.store.retention = Dur(floor);
        } else if retention < floor {
            problems.push(loc.nowhere(format!(
                "[store] retention of {} s is shorter than {} s (one day, and the longest find_time, whose events a restart counts again); use 0 to keep events forever",
                retention.as_secs(),
                floor.as_secs()
            )));
        }
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
        // Keys that belong to another type were reported (and dropped) while parsing.
        match &r.spec {
            ResponderSpec::Command(c) => {
                match &c.ban {
                    None => problems.push(loc.span(
                        &r.name,
                        format!(
                            "responder {:?}: type command needs `ban = [\"/absolute/program\", \"arg\", \"{{ip}}\"]`",
                            r.name.get_ref()
                        ),
                    )),
                    Some(argv) => check_argv(loc, problems, r, "ban", argv),
                }
                if let Some(argv) = &c.unban {
                    check_argv(loc, problems, r, "unban", argv);
                }
            }
            ResponderSpec::Nftables(n) => {
                if let Some(t) = &n.table {
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
            ResponderSpec::Ipset(_) | ResponderSpec::Ufw(_) | ResponderSpec::Log(_) => {}
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
            // Whether the file exists is checked by `Config::check_files` (I/O, at build).
            (None, Some(_)) => {}
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
        if let Some(f) = &j.filter {
            // The access filters also read a log format and trusted proxies (checked when
            // the filter is built).
            let allowed: &[&str] = match f.get_ref().as_str() {
                "nginx_access" | "apache_access" => &["mode", "log_format", "trusted_proxies"],
                _ => &["mode"],
            };
            for k in j.options.keys() {
                if !allowed.contains(&k.as_str()) {
                    problems.push(loc.span(
                        &j.name,
                        format!(
                            "jail {name:?}: unknown option {k:?} for a built-in filter; allowed: {}",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        let sources = (!j.files.is_empty()) as u8 + j.journal.is_some() as u8 + j.stdin as u8;
        if let Some(m) = crate::fleet::jail_source_problem(cfg, j, sources) {
            problems.push(loc.span(&j.name, m));
        } else if sources != 1 && !crate::fleet::sourceless_jail_ok(cfg, sources) {
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
        if let Err(e) = palisade_core::text::check_placeholders(a, PH) {
            problems.push(loc.span(&r.name, format!("responder {name:?}: {e}")));
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

/// Hides the password of a store URL or libpq key/value string for messages.
pub use palisade_core::redact_url;

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
    #[serde(default)]
    pub tls: EmailTls,
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
    #[serde(default)]
    pub format: WebhookFormat,
    /// Time limit of one POST.
    #[serde(default = "default_net_timeout")]
    pub timeout: Dur,
}

/// Declares a string-valued setting as an enum: its values, the message for any other value,
/// and comparison with the written name (`tls == "starttls"`).
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, $( $(#[$vm:meta])* $variant:ident = $text:literal ),+ $(,)?) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vm])* $variant, )+
        }

        impl $name {
            /// Every accepted value, as written in the file.
            pub const VALUES: &'static [&'static str] = &[$($text),+];

            /// The value as written in the file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                match s.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(serde::de::Error::custom(format!(
                        "{} {s:?}: expected {}",
                        $what,
                        expected_list(Self::VALUES)
                    ))),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// `"a", "b" or "c"`.
fn expected_list(v: &[&str]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    match q.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => q.join(""),
    }
}

string_enum! {
    /// `[notify.email] tls`: how the SMTP connection is protected.
    EmailTls, "[notify.email] tls",
    /// STARTTLS on the submission port (default).
    #[default]
    Starttls = "starttls",
    /// Implicit TLS (port 465).
    Tls = "tls",
    /// Plain text (local relays only).
    None = "none",
}

string_enum! {
    /// `[notify.webhook] format`: the body's shape.
    WebhookFormat, "[notify.webhook] format",
    /// Palisade's own JSON (default).
    #[default]
    Json = "json",
    /// Slack's `{"text": …}`.
    Slack = "slack",
    /// Discord's `{"content": …}`.
    Discord = "discord",
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

/// Whether an SMTP host is this machine (`localhost` or a loopback address).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
            if e.to.is_empty() {
                problems.push(loc.nowhere("[notify.email] to: give at least one recipient"));
            }
            if e.password.is_some() && e.password_file.is_some() {
                problems
                    .push(loc.nowhere("[notify.email] give either `password` or `password_file`"));
            }
            if e.ca_file.is_some() && e.tls == EmailTls::None {
                problems.push(loc.nowhere(
                    "[notify.email] ca_file needs tls = \"starttls\" or \"tls\" (with tls = \"none\" no certificate is checked)",
                ));
            }
            if e.tls == "none" && e.username.is_some() && !is_loopback_host(&e.smtp_host) {
                problems.push(loc.nowhere(format!(
                    "[notify.email] tls = \"none\" would send the SMTP password in clear text to {:?}: \
                     use \"starttls\" or \"tls\" (plain SMTP with a login is only allowed to a loopback relay)",
                    e.smtp_host
                )));
            }
            if e.username.is_none() && (e.password.is_some() || e.password_file.is_some()) {
                problems.push(loc.nowhere(
                    "[notify.email] a password needs `username` (the account to log in as)",
                ));
            }
        }
        if let Some(w) = &n.webhook {
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
    /// Host names the dashboard is reached by (the `Host` header), besides IP literals and
    /// `localhost`; others get 421 (a DNS-rebinding defence). Needed behind a named proxy.
    pub allowed_hosts: Vec<String>,
    /// Connections open at once (lowered to fit the descriptor limit minus a reserve).
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    pub max_connections_per_address: usize,
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
            allowed_hosts: Vec::new(),
            max_connections: 512,
            max_connections_per_address: 32,
        }
    }
}
// --- end server section ---
