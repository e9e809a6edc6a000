//! Palisade's configuration: one TOML file.
//!
//! Every section is read on its own, so one run of [`Config::parse`] reports a problem in each
//! broken section, plus every semantic problem (unknown filter, duplicate jail, missing
//! responder…), each with file, line, column, what is wrong and what is allowed.
//! Unknown keys are errors. Durations are written `30s`, `10m`, `1h`, `1d`, `1w` (or whole
//! seconds as an integer); a ban time may be `"forever"`.

#![warn(missing_docs)]

mod fields;
mod files;
mod fleet;
mod fleet_jail;
mod merge;
mod schema;

pub use fleet::{valid_agent_name, FleetRole, FleetSection};
pub use fleet_jail::{FleetJailSection, FleetJailSettings, MAX_MIN_HOSTS};
pub use merge::MergeError;
pub use schema::*;

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line (0 when not tied to a place).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        }
    }
}

/// A configuration that cannot be used: every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Maps byte offsets to lines and columns.
#[derive(Clone, Copy)]
pub(crate) struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(crate) fn at(&self, offset: usize, message: impl Into<String>) -> Problem {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Problem {
            file: self.file.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    pub(crate) fn span<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> Problem {
        self.at(s.span().start, message)
    }

    pub(crate) fn nowhere(&self, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
        }
    }
}

fn de_section<T: DeserializeOwned>(
    v: &Spanned<DeValue<'_>>,
    loc: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(v.clone())) {
        Ok(t) => Some(t),
        Err(e) => {
            let off = e.span().map_or(v.span().start, |s| s.start);
            problems.push(loc.at(off, with_suggestion(e.message().trim())));
            None
        }
    }
}

fn finish(cfg: Config, mut problems: Vec<Problem>) -> Result<Config, ConfigError> {
    if problems.is_empty() {
        Ok(cfg)
    } else {
        problems.sort_by_key(|p| (p.line, p.col));
        Err(ConfigError { problems })
    }
}

/// A `[[responder]]` table: `name`, `type`, then only the keys of that type. A key of another
/// type or an unknown key is reported with the keys the type allows, and dropped so that the
/// rest of the section is still checked.
fn de_responder(
    item: &Spanned<DeValue<'_>>,
    loc: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<ResponderSection> {
    let DeValue::Table(t) = item.get_ref() else {
        problems.push(loc.span(item, "each [[responder]] must be a table"));
        return None;
    };
    let mut name = None;
    let mut kind = None;
    for (k, v) in t.iter() {
        let key: &str = k.get_ref();
        if key != "name" && key != "type" {
            continue;
        }
        let DeValue::String(s) = v.get_ref() else {
            problems.push(loc.span(v, format!("[[responder]] `{key}` must be a string")));
            return None;
        };
        let s = Spanned::new(v.span(), s.to_string());
        if key == "name" {
            name = Some(s);
        } else {
            kind = Some(s);
        }
    }
    let Some(name) = name else {
        problems.push(loc.span(item, "[[responder]]: missing field `name`"));
        return None;
    };
    let types = RESPONDER_TYPES.join(", ");
    let Some(kind) = kind else {
        problems.push(loc.span(
            &name,
            format!(
                "responder {:?}: missing `type`; expected one of: {types}",
                name.get_ref()
            ),
        ));
        return None;
    };
    let Some(allowed) = schema::responder_keys(kind.get_ref()) else {
        problems.push(loc.span(
            &kind,
            format!(
                "unknown responder type {:?}; expected one of: {types}",
                kind.get_ref()
            ),
        ));
        return None;
    };
    let mut rest = toml::de::DeTable::new();
    for (k, v) in t.iter() {
        let key: &str = k.get_ref();
        if key == "name" {
            continue;
        }
        if key == "type" || allowed.contains(&key) {
            rest.insert(k.clone(), v.clone());
            continue;
        }
        let owners: Vec<&str> = RESPONDER_TYPES
            .iter()
            .copied()
            .filter(|t| schema::responder_keys(t).is_some_and(|f| f.contains(&key)))
            .collect();
        let allowed_list = std::iter::once("name, type".to_string())
            .chain(allowed.iter().map(|s| s.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = if owners.is_empty() {
            format!(
                "responder {:?}: unknown key `{key}` for type {}; allowed: {allowed_list}",
                name.get_ref(),
                kind.get_ref()
            )
        } else {
            format!(
                "responder {:?}: `{key}` is only for type {} (this one is {}; allowed: {allowed_list})",
                name.get_ref(),
                owners.join("/"),
                kind.get_ref()
            )
        };
        problems.push(loc.span(k, msg));
    }
    let rest = Spanned::new(item.span(), DeValue::Table(rest));
    let spec: ResponderSpec = de_section(&rest, loc, problems)?;
    Some(ResponderSection { name, kind, spec })
}

/// The allowed name closest to `word`, when close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, allowed: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    allowed
        .into_iter()
        .map(|a| (strsim::jaro_winkler(word, a), a))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, a)| a)
}

/// serde's "unknown field `maxretry`, expected one of `a`, `b`" (or "unknown variant"), with
/// "; did you mean `max_retry`?" added when one allowed name is close.
fn with_suggestion(message: &str) -> String {
    let parse = || {
        let rest = message
            .strip_prefix("unknown field `")
            .or_else(|| message.strip_prefix("unknown variant `"))?;
        let (word, rest) = rest.split_once('`')?;
        let (_, allowed) = rest.split_once("expected ")?;
        let names = allowed.split('`').skip(1).step_by(2);
        did_you_mean(word, names).map(str::to_owned)
    };
    match parse() {
        Some(s) => format!("{message}; did you mean `{s}`?"),
        None => message.to_string(),
    }
}

impl Config {
    /// Reads and validates a configuration file. `known_filters` are the filter names that
    /// exist (built-ins); a jail may also name a fail2ban filter file with `filter_file`.
    pub fn load(path: &Path, known_filters: &[&str]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                col: 0,
                message: format!("cannot read: {e}"),
            }],
        })?;
        let loc = Locator {
            file: path,
            text: &text,
        };
        let (mut cfg, mut problems) = Self::parse_unchecked(&text, &loc, known_filters)?;
        files::check(&mut cfg, &loc, &mut problems);
        finish(cfg, problems)
    }

    /// Parses and validates configuration text; `path` is used in messages and to resolve
    /// relative paths.
    ///
    /// Pure: no file is read. The files the configuration names (allowlist files, fail2ban
    /// filter files) are read and checked by [`Config::load`], after this.
    pub fn parse(text: &str, path: &Path, known_filters: &[&str]) -> Result<Config, ConfigError> {
        let loc = Locator { file: path, text };
        let (cfg, problems) = Self::parse_unchecked(text, &loc, known_filters)?;
        finish(cfg, problems)
    }

    /// Parses and validates; a syntax error ends it, other problems are collected.
    fn parse_unchecked(
        text: &str,
        loc: &Locator<'_>,
        known_filters: &[&str],
    ) -> Result<(Config, Vec<Problem>), ConfigError> {
        let path = loc.file;
        let loc = *loc;
        let mut problems = Vec::new();
        let root = match DeTable::parse(text) {
            Ok(r) => r,
            Err(e) => {
                let off = e.span().map_or(0, |s| s.start);
                return Err(ConfigError {
                    problems: vec![loc.at(off, e.message().trim().to_string())],
                });
            }
        };
        let mut cfg = Config {
            path: path.to_path_buf(),
            ..Default::default()
        };
        for (key, value) in root.get_ref().iter() {
            let k: &str = key.get_ref();
            match k {
                "fleet_jail" => {
                    let DeValue::Array(items) = value.get_ref() else {
                        problems.push(loc.span(
                            key,
                            "`fleet_jail` must be an array of tables: write [[fleet_jail]]",
                        ));
                        continue;
                    };
                    for item in items.iter() {
                        if let Some(f) = de_section(item, &loc, &mut problems) {
                            cfg.fleet_jails.push(f);
                        }
                    }
                }
                "general" => {
                    if let Some(v) = de_section(value, &loc, &mut problems) {
                        cfg.general = v;
                    }
                }
                "store" => {
                    if let Some(v) = de_section(value, &loc, &mut problems) {
                        cfg.store = v;
                    }
                }
                "defaults" => {
                    if let Some(v) = de_section(value, &loc, &mut problems) {
                        cfg.defaults = v;
                    }
                }
                "escalation" => cfg.escalation = de_section(value, &loc, &mut problems),
                "recidive" => cfg.recidive = de_section(value, &loc, &mut problems),
                "notify" => cfg.notify = de_section(value, &loc, &mut problems),
                "abuseipdb" => cfg.abuseipdb = de_section(value, &loc, &mut problems),
                "report" => cfg.report = de_section(value, &loc, &mut problems),
                "audit" => cfg.audit = de_section::<toml::Value>(value, &loc, &mut problems),
                "fleet" => {
                    cfg.fleet = de_section::<FleetSection>(value, &loc, &mut problems);
                    for p in cfg.fleet.as_ref().map(|f| f.problems()).unwrap_or_default() {
                        problems.push(loc.span(value, p));
                    }
                }
                "server" => {
                    cfg.server = de_section::<ServerSection>(value, &loc, &mut problems);
                    if let Some(s) = &cfg.server {
                        if s.tls_cert.is_some() != s.tls_key.is_some() {
                            problems.push(loc.span(
                                value,
                                "[server] tls_cert and tls_key go together: set both or neither",
                            ));
                        }
                        if s.max_connections == 0 || s.max_connections_per_address == 0 {
                            problems.push(loc.span(
                                value,
                                "[server] max_connections and max_connections_per_address must be at least 1",
                            ));
                        }
                        for h in &s.allowed_hosts {
                            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/') {
                                problems.push(loc.span(
                                    value,
                                    format!("[server] allowed_hosts: {h:?} is not a host name"),
                                ));
                            }
                        }
                    }
                }
                "allowlist" => {
                    if let Some(v) = de_section(value, &loc, &mut problems) {
                        cfg.allowlist = v;
                    }
                }
                "responder" | "jail" => {
                    let DeValue::Array(items) = value.get_ref() else {
                        problems.push(loc.span(
                            key,
                            format!("`{k}` must be an array of tables: write [[{k}]]"),
                        ));
                        continue;
                    };
                    for item in items.iter() {
                        if k == "jail" {
                            if let Some(j) = de_section(item, &loc, &mut problems) {
                                cfg.jails.push(j);
                            }
                        } else if let Some(r) = de_responder(item, &loc, &mut problems) {
                            cfg.responders.push(r);
                        }
                    }
                }
                other => problems.push(loc.span(
                    key,
                    format!(
                        "unknown section `{other}`, expected one of: {}{}",
                        SECTIONS.join(", "),
                        did_you_mean(other, SECTIONS.iter().copied())
                            .map_or(String::new(), |s| format!("; did you mean `{s}`?"))
                    ),
                )),
            }
        }
        schema::validate(&mut cfg, &loc, known_filters, &mut problems);
        fleet_jail::validate(&cfg, &loc, &mut problems);
        Ok((cfg, problems))
    }

    /// Resolves a path from the configuration relative to the configuration file's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }
}

pub use palisade_core::MAX_DURATION;

/// Checks a duration against [`MAX_DURATION`].
pub fn check_duration(d: std::time::Duration) -> Result<std::time::Duration, String> {
    if d > MAX_DURATION {
        return Err(format!(
            "duration of {} s is longer than the 10-year maximum ({} s); use a permanent ban instead",
            d.as_secs(),
            MAX_DURATION.as_secs()
        ));
    }
    Ok(d)
}

/// Checks a ban length: positive (a zero-length ban would be no ban) and at most
/// [`MAX_DURATION`].
pub fn check_ban_duration(d: std::time::Duration) -> Result<std::time::Duration, String> {
    if d.is_zero() {
        return Err("a ban must last at least 1 second".into());
    }
    check_duration(d)
}

/// Parses a duration: `"10m"`, `"1h30m"`, `"1w"`, or an integer number of seconds; at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return check_duration(std::time::Duration::from_secs(n));
    }
    humantime::parse_duration(t)
        .map_err(|e| {
            format!(
                "invalid duration {s:?} ({e}); write e.g. \"30s\", \"10m\", \"1h\", \"1d\", \"1w\""
            )
        })
        .and_then(check_duration)
}

/// Parses a ban length ([`parse_duration`], [`check_ban_duration`]).
pub fn parse_ban_duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s).and_then(check_ban_duration)
}

impl Config {
    /// The time zone for log timestamps without one (`[general] timezone`: `"system"` or an
    /// IANA name looked up in the system's time zone database).
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, String> {
        if self.general.timezone == "system" {
            return Ok(jiff::tz::TimeZone::system());
        }
        jiff::tz::TimeZone::get(&self.general.timezone).map_err(|e| e.to_string())
    }
}
