//! Imports fail2ban jail configuration (`jail.conf`, `jail.d/*.conf`, `jail.local`,
//! `jail.d/*.local`) as a commented Palisade TOML configuration.
//!
//! The files are read with the same INI reader and interpolation as filters (`[DEFAULT]`
//! inheritance, `%(name)s`, `%(known/name)s`, `[INCLUDES]`). Enabled jails become `[[jail]]`
//! sections using `filter_file = "DIR/filter.d/NAME.conf"` with the jail's filter options;
//! every setting that has no Palisade equivalent is listed in comments at the top — nothing is
//! dropped silently.

use crate::config::{ConfigSet, GetError};
use crate::error::LoadError;
use crate::ini::OMap;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Settings the importer maps (everything else set for an imported jail is listed).
const MAPPED: &[&str] = &[
    "enabled",
    "filter",
    "logpath",
    "backend",
    "journalmatch",
    "maxretry",
    "findtime",
    "bantime",
    "bantime.increment",
    "bantime.factor",
    "bantime.maxtime",
    "ignoreip",
    "port",
    "action",
    "banaction",
    "banaction_allports",
    "mode",
    "logtype",
    "__name__",
];

/// The result of an import.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// The Palisade configuration (TOML, commented).
    pub toml: String,
    /// Names of the imported (enabled) jails.
    pub jails: Vec<String>,
    /// Settings that could not be mapped, one line each.
    pub unmapped: Vec<String>,
}

/// fail2ban's `MyTime.str2seconds`: `600`, `10m`, `1h30m`, `1d`, `1w`, `1mo`, `1y`, `-1`.
pub fn fail2ban_seconds(v: &str) -> Option<i64> {
    let s: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if let Ok(n) = s.parse::<f64>() {
        return Some(n as i64);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.as_str()),
    };
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..u_end].to_lowercase();
        rest = &rest[u_end..];
        let mul = match unit.as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "mi" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "da" | "day" | "days" => 86400.0,
            "w" | "wk" | "week" | "weeks" => 604800.0,
            "mo" | "mon" | "month" | "months" => 2_629_800.0,
            "y" | "yy" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += n * mul;
    }
    Some(if neg { -(total as i64) } else { total as i64 })
}

/// Seconds as a Palisade duration string (`"10m"`, `"1h"`, `"90s"`).
fn dur(secs: i64) -> String {
    for (unit, n) in [("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs % n == 0 {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A value for a one-line comment.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `name[key=value, key="value"]` → (name, options).
pub fn parse_filter_spec(spec: &str) -> (String, Vec<(String, String)>) {
    let spec = spec.trim();
    let Some(open) = spec.find('[') else {
        return (spec.to_string(), Vec::new());
    };
    let name = spec[..open].trim().to_string();
    let body = spec[open + 1..].trim_end().trim_end_matches(']');
    let mut opts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut parts = Vec::new();
    for c in body.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(qc), c2) if c2 == qc => quote = None,
            (None, ',') => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            opts.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (name, opts)
}

/// `/etc/services` names → port numbers (TCP).
fn services() -> BTreeMap<String, u16> {
    let mut m = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string("/etc/services") else {
        return m;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut it = line.split_whitespace();
        let (Some(name), Some(pp)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        if proto != "tcp" {
            continue;
        }
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        m.entry(name.to_string()).or_insert(port);
        for alias in it {
            m.entry(alias.to_string()).or_insert(port);
        }
    }
    m
}

/// fail2ban `port = ssh,http 8080:8090` → ports; `None` = all ports; `Err` = unresolvable.
fn ports(v: &str, svc: &BTreeMap<String, u16>) -> Result<Option<Vec<u16>>, String> {
    let mut out = BTreeSet::new();
    for tok in v.split(|c: char| c == ',' || c.is_whitespace()) {
        let tok = tok.trim();
        if tok.is_empty() {
            continue;
        }
        if let Some((a, b)) = tok.split_once(':') {
            let p = |s: &str| -> Result<u16, String> {
                s.parse()
                    .ok()
                    .or_else(|| svc.get(s).copied())
                    .ok_or_else(|| format!("unknown port {s:?}"))
            };
            let (a, b) = (p(a)?, p(b)?);
            if a <= 1 && b == 65535 {
                return Ok(None);
            }
            if b < a || b - a > 1024 {
                return Err(format!("port range {tok} is too wide to list"));
            }
            out.extend(a..=b);
        } else if let Ok(n) = tok.parse::<u16>() {
            out.insert(n);
        } else if let Some(&n) = svc.get(tok) {
            out.insert(n);
        } else {
            return Err(format!("unknown port {tok:?}"));
        }
    }
    Ok(Some(out.into_iter().collect()))
}

/// The action names of fail2ban's `action` value (one action per line, `name[args]`).
fn action_names(v: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in v.chars() {
        match (quote, c) {
            (Some(qc), c2) if c2 == qc => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if depth > 0 => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            (None, c) if depth == 0 && c.is_whitespace() && !cur.is_empty() => {
                names.push(std::mem::take(&mut cur));
            }
            (None, c) if depth == 0 && c.is_whitespace() => {}
            (None, c) if depth == 0 => cur.push(c),
            _ => {}
        }
    }
    if !cur.is_empty() {
        names.push(cur);
    }
    names
}

/// Which Palisade responder type a fail2ban action maps to.
fn responder_kind(action: &str) -> Option<&'static str> {
    if action == "nftables" || action.starts_with("nftables-") {
        Some("nftables")
    } else if action.starts_with("iptables-ipset") {
        Some("ipset")
    } else if action == "ufw" {
        Some("ufw")
    } else {
        None
    }
}

fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "true" | "yes" | "1" | "on" | "enabled"
    )
}

struct Reader {
    set: ConfigSet,
    path: PathBuf,
}

impl Reader {
    fn get(&self, section: &str, option: &str) -> Result<Option<String>, LoadError> {
        let vars = OMap(vec![("__name__".into(), section.to_string())]);
        match self.set.get(section, option, &vars) {
            Ok(v) => Ok(Some(v)),
            Err(GetError::NoOption) | Err(GetError::NoSection) => Ok(None),
            Err(GetError::Interp(reason)) => Err(LoadError::Interpolation {
                path: self.path.clone(),
                section: section.to_string(),
                option: option.to_string(),
                reason,
            }),
        }
    }
}

/// One imported jail.
struct Jail {
    name: String,
    toml: String,
}

/// Reads the fail2ban configuration in `dir` and writes the equivalent Palisade
/// configuration.
pub fn import(dir: &Path) -> Result<Import, LoadError> {
    let path = dir.join("jail.conf");
    let set = ConfigSet::read(&path, &[])?;
    let rd = Reader {
        set,
        path: path.clone(),
    };
    let svc = services();
    let mut unmapped: Vec<String> = Vec::new();
    let mut disabled: Vec<String> = Vec::new();
    let mut jails: Vec<Jail> = Vec::new();
    // (kind, ports) → responder name; ipset/ufw ports merged per kind
    let mut nft_responders: Vec<(String, Vec<u16>)> = Vec::new();
    let mut merged: BTreeMap<&'static str, (BTreeSet<u16>, bool)> = BTreeMap::new();

    // [DEFAULT]: allowlist and escalation are global in Palisade.
    let def_ignore = rd.get("DEFAULT", "ignoreip")?.unwrap_or_default();
    let mut allow: Vec<String> = Vec::new();
    let add_ignore = |owner: &str, v: &str, allow: &mut Vec<String>, un: &mut Vec<String>| {
        for tok in v.split(|c: char| c == ',' || c.is_whitespace()) {
            let tok = tok.trim();
            if tok.is_empty() {
                continue;
            }
            let ok = tok.parse::<std::net::IpAddr>().is_ok()
                || tok.split_once('/').is_some_and(|(a, b)| {
                    a.parse::<std::net::IpAddr>().is_ok() && b.parse::<u8>().is_ok()
                });
            if ok {
                if !allow.iter().any(|a| a == tok) {
                    allow.push(tok.to_string());
                }
            } else {
                un.push(format!(
                    "{owner} ignoreip entry {tok:?}: not an address or network (DNS names are not resolved; add its addresses to [allowlist])"
                ));
            }
        }
    };
    add_ignore("[DEFAULT]", &def_ignore, &mut allow, &mut unmapped);
    let inc = rd
        .get("DEFAULT", "bantime.increment")?
        .is_some_and(|v| is_true(&v));
    let factor = rd.get("DEFAULT", "bantime.factor")?;
    let maxtime = rd.get("DEFAULT", "bantime.maxtime")?;

    let names: Vec<String> = rd
        .set
        .sections_names()
        .into_iter()
        .filter(|n| n != "INCLUDES" && n != "DEFAULT" && !n.starts_with("KNOWN/"))
        .collect();
    for name in names {
        let enabled = rd.get(&name, "enabled")?.is_some_and(|v| is_true(&v));
        if !enabled {
            disabled.push(name);
            continue;
        }
        let jname: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let owner = format!("[{name}]");
        let mut t = String::new();
        let _ = writeln!(t, "[[jail]]\nname = {}", q(&jname));
        if jname != name {
            let _ = writeln!(t, "# fail2ban jail [{name}]");
        }
        // filter
        let fspec = rd.get(&name, "filter")?.unwrap_or_else(|| name.clone());
        let (fname, fopts) = parse_filter_spec(&fspec);
        let ffile = dir.join("filter.d").join(format!("{fname}.conf"));
        let _ = writeln!(t, "filter_file = {}", q(&ffile.to_string_lossy()));
        // backend / sources
        let backend = rd.get(&name, "backend")?.unwrap_or_else(|| "auto".into());
        let backend = backend.trim().to_string();
        let mut opts: Vec<(String, String)> = fopts;
        let journal = backend.starts_with("systemd");
        if journal {
            let jm = match rd.get(&name, "journalmatch")? {
                Some(v) if !v.trim().is_empty() => v,
                _ => {
                    // the filter's own journalmatch
                    let mut init = OMap::default();
                    for (k, v) in &opts {
                        init.set(k, v.clone());
                    }
                    let fset = ConfigSet::read(&ffile, &[])?;
                    fset.resolve(&ffile, &init)?.journalmatch.join(" ")
                }
            };
            let toks: Vec<String> = jm.split_whitespace().map(String::from).collect();
            let list: Vec<String> = toks.iter().map(|s| q(s)).collect();
            let _ = writeln!(t, "journal = [{}]", list.join(", "));
            if backend != "systemd" {
                unmapped.push(format!(
                    "{owner} backend = {backend}: journal options are not mapped (reads the whole system journal with the matches above)"
                ));
            }
            if !opts.iter().any(|(k, _)| k == "logtype") {
                opts.push(("logtype".into(), "journal".into()));
            }
        } else {
            let lp = rd.get(&name, "logpath")?.unwrap_or_default();
            let mut files = Vec::new();
            for l in lp.lines() {
                let mut it = l.split_whitespace();
                let Some(p) = it.next() else { continue };
                files.push(q(p));
                for rest in it {
                    if rest != "tail" && rest != "head" {
                        unmapped.push(format!("{owner} logpath {p}: option {rest:?} ignored"));
                    } else if rest == "head" {
                        unmapped.push(format!(
                            "{owner} logpath {p} head: Palisade starts at the end of a log it has no saved position for (use `run --from-start` once)"
                        ));
                    }
                }
            }
            if files.is_empty() {
                unmapped.push(format!(
                    "{owner} has no logpath: imported with stdin = true; set files = [...]"
                ));
                let _ = writeln!(t, "stdin = true");
            } else {
                let _ = writeln!(t, "files = [{}]", files.join(", "));
            }
            if !["auto", "polling", "pyinotify", "gamin"].contains(&backend.as_str()) {
                unmapped.push(format!("{owner} backend = {backend}: read as files"));
            }
        }
        if !opts.is_empty() {
            let kv: Vec<String> = opts
                .iter()
                .map(|(k, v)| {
                    let key = if k
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        k.clone()
                    } else {
                        q(k)
                    };
                    format!("{key} = {}", q(v))
                })
                .collect();
            let _ = writeln!(t, "options = {{ {} }}", kv.join(", "));
        }
        // detection
        if let Some(v) = rd.get(&name, "maxretry")? {
            match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => {
                    let _ = writeln!(t, "max_retry = {n}");
                }
                _ => unmapped.push(format!("{owner} maxretry = {v}: not a positive integer")),
            }
        }
        if let Some(v) = rd.get(&name, "findtime")? {
            match fail2ban_seconds(&v) {
                Some(n) if n > 0 => {
                    let _ = writeln!(t, "find_time = {}", q(&dur(n)));
                }
                _ => unmapped.push(format!("{owner} findtime = {v}: not a duration")),
            }
        }
        if let Some(v) = rd.get(&name, "bantime")? {
            match fail2ban_seconds(&v) {
                Some(n) if n < 0 => {
                    let _ = writeln!(t, "ban_time = \"forever\"");
                }
                Some(n) if n > 0 => {
                    let _ = writeln!(t, "ban_time = {}", q(&dur(n)));
                }
                _ => unmapped.push(format!("{owner} bantime = {v}: not a duration")),
            }
        }
        // per-jail differences from the global settings
        let own_inc = rd
            .get(&name, "bantime.increment")?
            .is_some_and(|v| is_true(&v));
        if own_inc != inc {
            unmapped.push(format!(
                "{owner} bantime.increment = {own_inc}: escalation is global in Palisade ([escalation] follows [DEFAULT])"
            ));
        }
        if let Some(v) = rd.get(&name, "ignoreip")? {
            if flat(&v) != flat(&def_ignore) {
                unmapped.push(format!(
                    "{owner} ignoreip differs from [DEFAULT]: the allowlist is global in Palisade; its entries were added to [allowlist]"
                ));
                add_ignore(&owner, &v, &mut allow, &mut unmapped);
            }
        }
        // responders
        let action = rd.get(&name, "action")?.unwrap_or_default();
        let port = rd.get(&name, "port")?.unwrap_or_default();
        let mut rnames: Vec<String> = Vec::new();
        for a in action_names(&action) {
            match responder_kind(&a) {
                Some(kind) => {
                    let all_ports = a.ends_with("-allports");
                    let p = if all_ports {
                        Ok(None)
                    } else {
                        ports(&port, &svc)
                    };
                    let p = match p {
                        Ok(p) => p,
                        Err(e) => {
                            unmapped.push(format!(
                                "{owner} port = {}: {e}; banned on all ports",
                                flat(&port)
                            ));
                            None
                        }
                    };
                    let rn = match (kind, p) {
                        ("nftables", None) => "nftables".to_string(),
                        ("nftables", Some(p)) => {
                            let rn = format!("nftables-{jname}");
                            nft_responders.push((rn.clone(), p));
                            rn
                        }
                        (k, p) => {
                            let e = merged.entry(k).or_insert((BTreeSet::new(), false));
                            match p {
                                Some(p) => e.0.extend(p),
                                None => e.1 = true,
                            }
                            k.to_string()
                        }
                    };
                    if !rnames.contains(&rn) {
                        rnames.push(rn);
                    }
                }
                None => unmapped.push(format!(
                    "{owner} action {a}: no Palisade responder of this kind{}",
                    if a.starts_with("iptables") {
                        " (banned with the nftables responder instead)"
                    } else {
                        ""
                    }
                )),
            }
        }
        if rnames.is_empty() {
            let p = ports(&port, &svc).ok().flatten();
            match p {
                Some(p) if !p.is_empty() => {
                    let rn = format!("nftables-{jname}");
                    nft_responders.push((rn.clone(), p));
                    rnames.push(rn);
                }
                _ => rnames.push("nftables".into()),
            }
        }
        let list: Vec<String> = rnames.iter().map(|s| q(s)).collect();
        let _ = writeln!(t, "responders = [{}]", list.join(", "));
        // everything else set for this jail
        for k in rd.set.own_options(&name) {
            if MAPPED.contains(&k.as_str()) {
                continue;
            }
            let v = rd.get(&name, &k)?.unwrap_or_default();
            unmapped.push(format!(
                "{owner} {k} = {}: no Palisade equivalent",
                flat(&v)
            ));
        }
        jails.push(Jail {
            name: jname,
            toml: t,
        });
    }
    // [DEFAULT] settings that have no equivalent
    for (k, v) in &rd.set.defaults().0 {
        // Unset values, and the path/backend variables of paths-*.conf (only used through
        // interpolation where a jail refers to them, which is mapped there), are not
        // settings.
        let helper = k.ends_with("_log") || k.ends_with("_backend") || k.starts_with("syslog_");
        if MAPPED.contains(&k.as_str()) || k.starts_with("action_") || helper || v.trim().is_empty()
        {
            continue;
        }
        let v = rd
            .get("DEFAULT", k)
            .ok()
            .flatten()
            .unwrap_or_else(|| v.clone());
        unmapped.push(format!(
            "[DEFAULT] {k} = {}: no Palisade equivalent",
            flat(&v)
        ));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Palisade configuration imported from fail2ban ({}) by `palisade import fail2ban`.\n#\n# Imported jails: {}.",
        dir.display(),
        if jails.is_empty() {
            "none".to_string()
        } else {
            jails.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(", ")
        }
    );
    if !disabled.is_empty() {
        let _ = writeln!(
            out,
            "# Disabled in fail2ban, not imported ({}): {}.",
            disabled.len(),
            disabled.join(", ")
        );
    }
    if unmapped.is_empty() {
        let _ = writeln!(out, "#\n# Every setting was mapped.");
    } else {
        let _ = writeln!(
            out,
            "#\n# Settings that could not be mapped ({}):",
            unmapped.len()
        );
        for u in &unmapped {
            let _ = writeln!(out, "#   - {u}");
        }
    }
    let _ = writeln!(
        out,
        "#\n# Filters are fail2ban's own files, applied with fail2ban's semantics; test one with\n#   palisade check /var/log/auth.log --filter-file {}/filter.d/sshd.conf\n",
        dir.display()
    );
    let _ = writeln!(out, "[defaults]");
    let _ = writeln!(
        out,
        "# fail2ban counts and bans single addresses, IPv6 included."
    );
    let _ = writeln!(out, "ipv6_prefix = 128");
    if let Some(n) = rd
        .get("DEFAULT", "maxretry")?
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        let _ = writeln!(out, "max_retry = {n}");
    }
    if let Some(n) = rd
        .get("DEFAULT", "findtime")?
        .and_then(|v| fail2ban_seconds(&v))
    {
        if n > 0 {
            let _ = writeln!(out, "find_time = {}", q(&dur(n)));
        }
    }
    if let Some(n) = rd
        .get("DEFAULT", "bantime")?
        .and_then(|v| fail2ban_seconds(&v))
    {
        if n < 0 {
            let _ = writeln!(out, "ban_time = \"forever\"");
        } else if n > 0 {
            let _ = writeln!(out, "ban_time = {}", q(&dur(n)));
        }
    }
    let _ = writeln!(out, "\n[escalation]");
    if inc {
        let f = factor
            .as_deref()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        let _ = writeln!(
            out,
            "# bantime.increment = true. fail2ban's default formula is ban_time × factor × 2^n;\n# Palisade's is ban_time × factor^n (factor at least 2 keeps the doubling)."
        );
        let _ = writeln!(out, "enabled = true");
        let _ = writeln!(out, "factor = {:?}", if f < 2.0 { 2.0 } else { f });
        let m = maxtime
            .as_deref()
            .and_then(fail2ban_seconds)
            .filter(|&n| n > 0);
        match m {
            Some(n) => {
                let _ = writeln!(out, "max = {}", q(&dur(n)));
            }
            None => {
                let _ = writeln!(out, "max = \"1w\"   # bantime.maxtime not set in fail2ban");
            }
        }
    } else {
        let _ = writeln!(
            out,
            "# bantime.increment is off in fail2ban.\nenabled = false"
        );
    }
    let _ = writeln!(
        out,
        "\n[recidive]\n# fail2ban's recidive jail is separate there; Palisade's is built in.\nenabled = {}",
        jails.iter().any(|j| j.name == "recidive")
    );
    let _ = writeln!(out, "\n[allowlist]\n# fail2ban ignoreip (ignoreself = true also ignores this host's addresses).");
    if !allow.iter().any(|a| a.starts_with("127.")) {
        allow.push("127.0.0.0/8".into());
    }
    if !allow.iter().any(|a| a == "::1") {
        allow.push("::1".into());
    }
    let list: Vec<String> = allow.iter().map(|s| q(s)).collect();
    let _ = writeln!(out, "addresses = [{}]", list.join(", "));
    for (rn, p) in &nft_responders {
        let table: String = rn
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let pl: Vec<String> = p.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(
            out,
            "\n[[responder]]\nname = {}\ntype = \"nftables\"\ntable = {}\nports = [{}]",
            q(rn),
            q(&table),
            pl.join(", ")
        );
    }
    for (k, (p, all)) in &merged {
        let _ = writeln!(out, "\n[[responder]]\nname = {}\ntype = {}", q(k), q(k));
        if !*all && !p.is_empty() {
            let pl: Vec<String> = p.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(
                out,
                "# the ports of every jail using {k} (one {k} responder serves them all)\nports = [{}]",
                pl.join(", ")
            );
        }
    }
    for j in &jails {
        let _ = writeln!(out, "\n{}", j.toml.trim_end());
    }
    Ok(Import {
        toml: out,
        jails: jails.into_iter().map(|j| j.name).collect(),
        unmapped,
    })
}
