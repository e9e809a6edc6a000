//! Palisade's configuration: one TOML file.
//!
//! One run of [`Config::parse`] reports every problem: every bad key and value of every
//! section (not only the first), plus every semantic problem (unknown filter, duplicate jail,
//! missing responder…), each with file, line, column, what is wrong and what is allowed, in
//! file order. [`Config::load_all`] adds the files the configuration names and hands back what
//! could be read, so that the caller can add its own checks (filter files) to the same list.
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

/// Places semantic problems (kept apart from the list above: other sections add modules there).
mod place;

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

impl Problem {
    /// A problem at byte `offset` of `text`, the contents of `file` (line and column counted
    /// as in every other problem).
    pub fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Problem {
        Locator { file, text }.at(offset, message)
    }
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
    /// The problems, in order of place ([`sort_problems`]).
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    /// One problem a line, in the order given (see [`sort_problems`]), then the count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the configuration",
            if n == 1 { "" } else { "s" }
        )
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

    /// The byte offset of a 1-based line and column (the inverse of [`Locator::at`]).
    pub(crate) fn offset(&self, line: usize, col: usize) -> usize {
        let start: usize = self
            .text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum();
        let rest = &self.text[start.min(self.text.len())..];
        start
            + rest
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(rest.len(), |(i, _)| i)
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

/// Deserializes one section, reporting every bad key and value in it, not only the first.
///
/// serde stops at the first error, so the entry it points at is reported and taken out, and
/// the rest is read again, until it reads: the section is then checked further with its good
/// values (a taken-out key has its default; a semantic problem that names it is dropped by
/// [`place::settle`], since its value was reported already). `None` when the section cannot
/// be read at all (not a table, a required key missing). Works for any `Deserialize` type, so
/// a new section gets it without code of its own.
fn de_section<T: DeserializeOwned>(
    v: &Spanned<DeValue<'_>>,
    loc: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let mut v = v.clone();
    let mut removed: Vec<String> = Vec::new();
    let mut seen: Vec<(usize, String)> = Vec::new();
    loop {
        let e = match T::deserialize(ValueDeserializer::from(v.clone())) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let message = e.message().trim().to_string();
        let (off, culprit) = match e.span() {
            Some(s) => (s.start, None),
            // Errors from inside an internally tagged enum come without a place: find the
            // key whose removal makes this error go away.
            None => match culprit::<T>(&v, &message) {
                Some((off, key)) => (off, Some(key)),
                None => (v.span().start, None),
            },
        };
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next());
        // A required key reported (and taken out) for its value is not "missing" too.
        let consequence = missing.is_some_and(|f| removed.iter().any(|r| r == f));
        if !consequence && !seen.contains(&(off, message.clone())) {
            problems.push(loc.at(off, with_suggestion(&message)));
            seen.push((off, message.clone()));
        }
        let taken = match culprit {
            Some(key) => remove_key(&mut v, &key),
            None => remove_at(v.get_mut(), off),
        };
        match taken {
            Some(k) => removed.push(k),
            None => return None,
        }
    }
}

/// The key of table `v` without which `T` no longer fails with `message` (and not because
/// that key is then missing), with the offset of its value.
fn culprit<T: DeserializeOwned>(
    v: &Spanned<DeValue<'_>>,
    message: &str,
) -> Option<(usize, String)> {
    let DeValue::Table(t) = v.get_ref() else {
        return None;
    };
    t.iter().find_map(|(k, x)| {
        let mut without = v.clone();
        remove_key(&mut without, k.get_ref())?;
        let missing = format!("missing field `{}`", k.get_ref());
        match T::deserialize(ValueDeserializer::from(without)) {
            Err(e) if e.message().trim() == message || e.message().trim() == missing => None,
            _ => Some((x.span().start, k.get_ref().to_string())),
        }
    })
}

fn remove_key(v: &mut Spanned<DeValue<'_>>, key: &str) -> Option<String> {
    let DeValue::Table(t) = v.get_mut() else {
        return None;
    };
    let k = t.keys().find(|k| k.get_ref() == key)?.clone();
    t.remove(&k);
    Some(key.to_string())
}

/// Takes out the innermost table entry whose key or value holds byte `off`; its key.
fn remove_at(v: &mut DeValue<'_>, off: usize) -> Option<String> {
    match v {
        DeValue::Table(t) => {
            for (_, x) in t.iter_mut() {
                if let Some(k) = remove_at(x.get_mut(), off) {
                    return Some(k);
                }
            }
            let k = t
                .iter()
                .find(|(k, x)| k.span().contains(&off) || x.span().contains(&off))?
                .0
                .clone();
            t.remove(&k);
            Some(k.get_ref().to_string())
        }
        DeValue::Array(a) => a.iter_mut().find_map(|x| remove_at(x.get_mut(), off)),
        _ => None,
    }
}

/// Orders problems by place: the configuration file first, then the files it names (by
/// path); in a file by line and column, problems without a line last.
pub fn sort_problems(problems: &mut [Problem], config: &Path) {
    problems.sort_by(|a, b| {
        let key = |p: &Problem| (p.file != config, p.line == 0, p.line, p.col);
        (a.file != config)
            .cmp(&(b.file != config))
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| key(a).cmp(&key(b)))
            .then_with(|| a.message.cmp(&b.message))
    });
}

fn finish(
    cfg: Option<Config>,
    mut problems: Vec<Problem>,
    path: &Path,
) -> Result<Config, ConfigError> {
    match cfg {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => {
            sort_problems(&mut problems, path);
            Err(ConfigError { problems })
        }
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

/// Semantic checks of `[server]` (placed by [`place::settle`]).
fn check_server(cfg: &Config, loc: &Locator<'_>, problems: &mut Vec<Problem>) {
    let Some(s) = &cfg.server else {
        return;
    };
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        problems
            .push(loc.nowhere("[server] tls_cert and tls_key go together: set both or neither"));
    }
    if s.max_connections == 0 || s.max_connections_per_address == 0 {
        problems.push(loc.nowhere(
            "[server] max_connections and max_connections_per_address must be at least 1",
        ));
    }
    for h in &s.allowed_hosts {
        if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/') {
            problems.push(loc.nowhere(format!("[server] allowed_hosts: {h:?} is not a host name")));
        }
    }
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
        let (cfg, problems) = Self::load_all(path, known_filters);
        finish(cfg, problems, path)
    }

    /// Reads and validates like [`Config::load`], and returns what could be read together
    /// with every problem found (sorted, [`sort_problems`]), so that a caller can add the
    /// problems of its own checks (filter files) and report all of them at once. The
    /// configuration is `None` only when the file cannot be read or is not TOML; sections
    /// with problems are left out of it.
    pub fn load_all(path: &Path, known_filters: &[&str]) -> (Option<Config>, Vec<Problem>) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return (
                    None,
                    vec![Problem {
                        file: path.to_path_buf(),
                        line: 0,
                        col: 0,
                        message: format!("cannot read: {e}"),
                    }],
                )
            }
        };
        let loc = Locator {
            file: path,
            text: &text,
        };
        let (mut cfg, mut problems) = Self::parse_unchecked(&text, &loc, known_filters);
        if let Some(cfg) = &mut cfg {
            files::check(cfg, &loc, &mut problems);
        }
        sort_problems(&mut problems, path);
        (cfg, problems)
    }

    /// Parses and validates configuration text; `path` is used in messages and to resolve
    /// relative paths.
    ///
    /// Pure: no file is read. The files the configuration names (allowlist files, fail2ban
    /// filter files) are read and checked by [`Config::load`], after this.
    pub fn parse(text: &str, path: &Path, known_filters: &[&str]) -> Result<Config, ConfigError> {
        let loc = Locator { file: path, text };
        let (cfg, problems) = Self::parse_unchecked(text, &loc, known_filters);
        finish(cfg, problems, path)
    }

    /// Parses and validates; a syntax error ends it (no configuration), every other problem
    /// is collected.
    fn parse_unchecked(
        text: &str,
        loc: &Locator<'_>,
        known_filters: &[&str],
    ) -> (Option<Config>, Vec<Problem>) {
        let path = loc.file;
        let loc = *loc;
        let mut problems = Vec::new();
        let root = match DeTable::parse(text) {
            Ok(r) => r,
            Err(e) => {
                let off = e.span().map_or(0, |s| s.start);
                return (None, vec![loc.at(off, e.message().trim().to_string())]);
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
                "server" => cfg.server = de_section(value, &loc, &mut problems),
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
        let parsed = problems.len();
        check_server(&cfg, &loc, &mut problems);
        schema::validate(&mut cfg, &loc, known_filters, &mut problems);
        fleet_jail::validate(&cfg, &loc, &mut problems);
        for p in cfg
            .fleet
            .as_ref()
            .map(|f| f.problems_with(&cfg))
            .unwrap_or_default()
        {
            problems.push(loc.nowhere(p));
        }
        place::settle(root.get_ref(), &loc, &mut problems, parsed);
        (Some(cfg), problems)
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
