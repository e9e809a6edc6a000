//! Reading a fail2ban filter definition the way fail2ban's client does: file set
//! (`x.conf`, `x.d/*.conf`, `x.local`, `x.d/*.local`), `[INCLUDES] before/after` (each with its
//! own `.local`), merging with `KNOWN/<section>` memory of overridden values, `%(name)s` and
//! `%(section/name)s` interpolation, `[Init]` options overridable by the caller (with their
//! `known/` copies) and finally recursive `<tag>` substitution.

use crate::error::LoadError;
use crate::ini::{self, IniFile, OMap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAX_INTERPOLATION_DEPTH: usize = 10;
const MAX_TAG_REPLACE_COUNT: usize = 25;

/// All files of one filter, merged.
#[derive(Debug, Default)]
pub(crate) struct ConfigSet {
    defaults: OMap,
    sections: Vec<(String, OMap)>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

#[derive(Debug)]
pub(crate) enum GetError {
    NoSection,
    NoOption,
    Interp(String),
}

/// The options a filter definition resolves to.
#[derive(Debug, Clone, Default)]
pub struct ResolvedOptions {
    /// `prefregex`.
    pub prefregex: Option<String>,
    /// `failregex`, one per line.
    pub failregex: Vec<String>,
    /// `ignoreregex`, one per line.
    pub ignoreregex: Vec<String>,
    /// `maxlines`.
    pub maxlines: Option<String>,
    /// `datepattern`.
    pub datepattern: Option<String>,
    /// `journalmatch`, one per line.
    pub journalmatch: Vec<String>,
    /// `usedns`.
    pub usedns: Option<String>,
    /// All combined options after substitution (including `[Init]` ones such as `mode`).
    pub all: Vec<(String, String)>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

fn is_file(p: &Path) -> bool {
    p.is_file()
}

fn with_ext(p: &Path, ext: &str) -> PathBuf {
    p.with_extension(ext)
}

struct IncludeCx<'a> {
    fallback: &'a [PathBuf],
    cache: HashMap<PathBuf, IniFile>,
}

impl IncludeCx<'_> {
    fn parse(&mut self, p: &Path) -> Result<&IniFile, LoadError> {
        if !self.cache.contains_key(p) {
            let text = std::fs::read_to_string(p).map_err(|e| LoadError::Io {
                path: p.to_path_buf(),
                source: e,
            })?;
            let f = ini::parse(&text, p)?;
            self.cache.insert(p.to_path_buf(), f);
        }
        Ok(&self.cache[p])
    }

    /// `_getIncludes`: each file followed by its `.local`, each expanded with its includes.
    fn includes(&mut self, files: &[PathBuf], seen: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
        let mut expanded: Vec<PathBuf> = Vec::new();
        for f in files {
            expanded.push(f.clone());
            let local = with_ext(f, "local");
            if !files.contains(&local) && is_file(&local) && local != *f {
                expanded.push(local);
            }
        }
        let mut out = Vec::new();
        for f in expanded {
            out.extend(self.includes_one(&f, seen)?);
        }
        Ok(out)
    }

    fn includes_one(&mut self, res: &Path, seen: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
        let ini = self.parse(res)?.clone();
        let dir = res.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut before = Vec::new();
        let mut after = Vec::new();
        if let Some(inc) = ini.section("INCLUDES") {
            for (opt, list) in [("before", &mut before), ("after", &mut after)] {
                let Some(v) = inc.get(opt).or_else(|| ini.defaults.get(opt)) else {
                    continue;
                };
                for name in v.split('\n') {
                    if name.is_empty() {
                        continue;
                    }
                    let mut r = if Path::new(name).is_absolute() {
                        PathBuf::from(name)
                    } else {
                        dir.join(name)
                    };
                    if seen.contains(&r) || r == res {
                        let mut chain: Vec<String> =
                            seen.iter().map(|p| p.display().to_string()).collect();
                        chain.push(res.display().to_string());
                        chain.push(r.display().to_string());
                        return Err(LoadError::IncludeLoop {
                            path: res.to_path_buf(),
                            option: opt.into(),
                            target: r,
                            chain: chain.join(" -> "),
                        });
                    }
                    if !is_file(&r) {
                        // `x.local` overrides are optional by convention
                        if r.extension().is_some_and(|e| e == "local") {
                            continue;
                        }
                        // A relative path that does not resolve (e.g. the test filters'
                        // `../../../../../../../config/filter.d/common.conf`, written for
                        // fail2ban's source tree, not Debian's layout) is looked up by its
                        // file name in the fallback directories.
                        let alt = r.file_name().and_then(|b| {
                            self.fallback.iter().map(|d| d.join(b)).find(|p| is_file(p))
                        });
                        match alt {
                            Some(a) => r = a,
                            None => {
                                return Err(LoadError::MissingInclude {
                                    path: res.to_path_buf(),
                                    option: opt.into(),
                                    target: r,
                                })
                            }
                        }
                    }
                    let mut s = seen.to_vec();
                    s.push(res.to_path_buf());
                    list.extend(self.includes(&[r], &s)?);
                }
            }
        }
        let mut out = before;
        out.push(res.to_path_buf());
        out.extend(after);
        Ok(out)
    }
}

/// `^(\w+)(\?.+)$`: conditional section / option names (`Definition?family=inet6`).
fn split_conditional(n: &str) -> Option<(&str, &str)> {
    let q = n.find('?')?;
    let (a, b) = n.split_at(q);
    if a.is_empty() || b.len() < 2 || !a.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((a, b))
}

impl ConfigSet {
    /// Reads the filter at `path` (`.../filter.d/name.conf`) with everything it pulls in.
    pub fn read(path: &Path, fallback: &[PathBuf]) -> Result<ConfigSet, LoadError> {
        if !is_file(path) {
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let mut files = vec![path.to_path_buf()];
        let ddir = with_ext(path, "d");
        let glob = |ext: &str| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&ddir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == ext) && is_file(p))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        if path.extension().is_some_and(|e| e == "conf") {
            files.extend(glob("conf"));
            let local = with_ext(path, "local");
            if is_file(&local) {
                files.push(local);
            }
            files.extend(glob("local"));
        }
        let mut cx = IncludeCx {
            fallback,
            cache: HashMap::new(),
        };
        let full = cx.includes(&files, &[])?;
        let mut set = ConfigSet::default();
        for f in &full {
            let ini = cx.parse(f)?.clone();
            for (k, v) in ini.defaults.0 {
                set.defaults.set(&k, v);
            }
            for (name, sec) in ini.sections {
                let (name, sec) = match split_conditional(&name) {
                    Some((base, cond)) => {
                        let mut s2 = OMap::default();
                        for (k, v) in sec.0 {
                            s2.set(&format!("{k}{cond}"), v);
                        }
                        (base.to_string(), s2)
                    }
                    None => (name, sec),
                };
                match set.sections.iter().position(|(n, _)| *n == name) {
                    Some(i) => {
                        let known: Vec<(String, String)> = set.sections[i]
                            .1
                             .0
                            .iter()
                            .filter(|(k, _)| sec.contains(k))
                            .cloned()
                            .collect();
                        let kn = format!("KNOWN/{name}");
                        let ki = match set.sections.iter().position(|(n, _)| *n == kn) {
                            Some(j) => j,
                            None => {
                                set.sections.push((kn, OMap::default()));
                                set.sections.len() - 1
                            }
                        };
                        for (k, v) in known {
                            set.sections[ki].1.set(&k, v);
                        }
                        for (k, v) in sec.0 {
                            set.sections[i].1.set(&k, v);
                        }
                    }
                    None => set.sections.push((name, sec)),
                }
            }
        }
        set.files = full;
        Ok(set)
    }

    fn section(&self, name: &str) -> Option<&OMap> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Section names in reading order (`KNOWN/…` memories included).
    pub fn sections_names(&self) -> Vec<String> {
        self.sections.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The merged `[DEFAULT]` section (raw values).
    pub fn defaults(&self) -> &OMap {
        &self.defaults
    }

    /// Whether the section exists.
    pub fn has_section(&self, name: &str) -> bool {
        self.section(name).is_some()
    }

    /// Own options of a section (without defaults).
    pub fn own_options(&self, name: &str) -> Vec<String> {
        self.section(name)
            .map(|s| s.keys().map(String::from).collect())
            .unwrap_or_default()
    }

    /// `ConfigParser.get(section, option, vars=vars)` with fail2ban's interpolation.
    pub fn get(&self, section: &str, option: &str, vars: &OMap) -> Result<String, GetError> {
        let option = option.to_lowercase();
        let sec = if section == "DEFAULT" {
            None
        } else {
            Some(self.section(section).ok_or(GetError::NoSection)?)
        };
        let vars: OMap = OMap(
            vars.0
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.clone()))
                .collect(),
        );
        let raw = vars
            .get(&option)
            .or_else(|| sec.and_then(|s| s.get(&option)))
            .or_else(|| self.defaults.get(&option))
            .ok_or(GetError::NoOption)?
            .to_string();
        let chain = Chain {
            vars: &vars,
            sec,
            defaults: &self.defaults,
        };
        let mut acc = String::new();
        self.interpolate(section, &mut acc, &raw, &chain, &HashMap::new(), 1)?;
        Ok(acc)
    }

    fn interpolate(
        &self,
        section: &str,
        acc: &mut String,
        rest: &str,
        chain: &Chain<'_>,
        overlay: &HashMap<String, String>,
        depth: usize,
    ) -> Result<(), GetError> {
        let mut overlay = overlay.clone();
        overlay.insert("__name__".into(), section.to_string());
        self.map_section_options(section, rest, chain, &mut overlay);
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(GetError::Interp(format!(
                "interpolation too deep (more than {MAX_INTERPOLATION_DEPTH} levels)"
            )));
        }
        let mut rest = rest;
        while !rest.is_empty() {
            let Some(p) = rest.find('%') else {
                acc.push_str(rest);
                return Ok(());
            };
            acc.push_str(&rest[..p]);
            rest = &rest[p..];
            let c = rest[1..].chars().next();
            match c {
                Some('%') => {
                    acc.push('%');
                    rest = &rest[2..];
                }
                Some('(') => {
                    let close = rest.find(')').filter(|&i| i > 2);
                    let ok = close.is_some_and(|i| rest[i + 1..].starts_with('s'));
                    if !ok {
                        return Err(GetError::Interp(format!(
                            "bad interpolation variable reference {rest:?}"
                        )));
                    }
                    let i = close.expect("checked");
                    let var = rest[2..i].to_lowercase();
                    rest = &rest[i + 2..];
                    let v = overlay
                        .get(&var)
                        .map(String::as_str)
                        .or_else(|| chain.get(&var));
                    let Some(v) = v else {
                        return Err(GetError::Interp(format!(
                            "bad value substitution: %({var})s is not defined"
                        )));
                    };
                    if v.contains('%') {
                        let v = v.to_string();
                        self.interpolate(section, acc, &v, chain, &overlay, depth + 1)?;
                    } else {
                        acc.push_str(v);
                    }
                }
                _ => {
                    return Err(GetError::Interp(format!(
                        "'%' must be followed by '%' or '(', found: {rest:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// `%(section/option)s`: pulls raw values of other sections (or `known/` ones) into the
    /// interpolation map.
    fn map_section_options(
        &self,
        section: &str,
        rest: &str,
        chain: &Chain<'_>,
        overlay: &mut HashMap<String, String>,
    ) {
        if !rest.contains('/') || !rest.contains("%(") {
            return;
        }
        let mut s = rest;
        while let Some(i) = s.find("%(") {
            s = &s[i + 2..];
            let Some(close) = s.find(')') else { break };
            if !s[close + 1..].starts_with('s') {
                continue;
            }
            let sopt = &s[..close];
            let Some(slash) = sopt.find('/') else {
                continue;
            };
            let (sec, opt) = (&sopt[..slash], &sopt[slash + 1..]);
            if sec.is_empty()
                || opt.is_empty()
                || !sec
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                continue;
            }
            if overlay.contains_key(sopt) || chain.get(sopt).is_some() {
                continue;
            }
            let lw = sec.to_lowercase();
            let mut v: Option<String> = None;
            let mut usedef = lw == "default";
            if !usedef {
                if lw == "known" {
                    match self
                        .section(&format!("KNOWN/{section}"))
                        .and_then(|x| x.get(opt))
                    {
                        Some(x) => v = Some(x.to_string()),
                        None => usedef = true,
                    }
                } else {
                    let Some(secmap) = self.section(sec) else {
                        continue;
                    };
                    match secmap.get(opt) {
                        Some(x) => v = Some(x.to_string()),
                        None => usedef = true,
                    }
                }
            }
            if usedef {
                match self.defaults.get(opt) {
                    Some(x) => v = Some(x.to_string()),
                    None => continue,
                }
            }
            if let Some(v) = v {
                overlay.insert(sopt.to_string(), v);
            }
        }
    }

    /// `get_ex`: `section/option` names read from that section (`known/` tries the
    /// `KNOWN/<section>` memory first, `default/` the defaults).
    pub fn get_ex(&self, section: &str, option: &str, vars: &OMap) -> Result<String, GetError> {
        if let Some(slash) = option.find('/') {
            let (sec, opt) = (&option[..slash], &option[slash + 1..]);
            let sec_ok = !sec.is_empty()
                && sec
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
            let opt_ok = !opt.is_empty() && !opt.chars().any(|c| c.is_whitespace() || c == '>');
            if sec_ok && opt_ok {
                let lw = sec.to_lowercase();
                let cands: Vec<String> = if lw == "known" {
                    vec![format!("KNOWN/{section}"), section.to_string()]
                } else if lw == "default" {
                    vec!["DEFAULT".to_string()]
                } else {
                    vec![sec.to_string()]
                };
                for c in cands {
                    match self.get(&c, opt, &OMap::default()) {
                        Ok(v) => return Ok(v),
                        Err(GetError::NoSection) | Err(GetError::NoOption) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        self.get(section, option, vars)
    }
}

struct Chain<'a> {
    vars: &'a OMap,
    sec: Option<&'a OMap>,
    defaults: &'a OMap,
}

impl Chain<'_> {
    fn get(&self, k: &str) -> Option<&str> {
        self.vars
            .get(k)
            .or_else(|| self.sec.and_then(|s| s.get(k)))
            .or_else(|| self.defaults.get(k))
    }
}

/// `<tag>` occurrences: `<([^ <>]+)>`.
fn find_tag(s: &str, from: usize) -> Option<(usize, usize, &str)> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        if b[i] == b'<' {
            let mut j = i + 1;
            while j < b.len() && !matches!(b[j], b' ' | b'<' | b'>') {
                j += 1;
            }
            if j < b.len() && b[j] == b'>' && j > i + 1 {
                return Some((i, j + 1, &s[i + 1..j]));
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    None
}

/// `substituteRecursiveTags`.
fn substitute_tags(
    tags: &mut OMap,
    ignore: &[String],
    addrepl: &mut dyn FnMut(&str) -> Result<Option<String>, String>,
) -> Result<(), String> {
    let mut done: Vec<String> = Vec::new();
    let mut rep_counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    loop {
        let mut rep_flag = false;
        let keys: Vec<String> = tags.keys().map(String::from).collect();
        for tag in keys {
            if ignore.contains(&tag) || done.contains(&tag) {
                continue;
            }
            let orgval = tags.get(&tag).unwrap_or_default().to_string();
            let mut value = orgval.clone();
            let mut rplc = rep_counts.get(&tag).cloned().unwrap_or_default();
            let mut m = find_tag(&value, 0);
            while let Some((start, end, rtag)) = m {
                let rtag = rtag.to_string();
                if ignore.contains(&rtag) {
                    m = find_tag(&value, end);
                    continue;
                }
                if rtag == tag || rplc.get(&rtag).copied().unwrap_or(1) > MAX_TAG_REPLACE_COUNT {
                    return Err(format!(
                        "self-referencing definitions cannot be resolved: <{rtag}> in {tag}"
                    ));
                }
                let repl = match tags.get(&rtag) {
                    Some(v) => Some(v.to_string()),
                    None => addrepl(&rtag)?,
                };
                let Some(repl) = repl else {
                    m = find_tag(&value, end);
                    continue;
                };
                value = value.replace(&format!("<{rtag}>"), &repl);
                *rplc.entry(rtag).or_insert(0) += 1;
                m = find_tag(&value, start);
            }
            if orgval != value {
                if find_tag(&value, 0).is_some() {
                    rep_counts.insert(tag.clone(), rplc);
                    rep_flag = true;
                }
                tags.set(&tag, value.clone());
            }
            if !value.contains('<') {
                done.push(tag);
            }
        }
        if !rep_flag {
            return Ok(());
        }
    }
}

/// The options fail2ban reads from a filter's `[Definition]`.
const CONFIG_OPTS: [&str; 7] = [
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

impl ConfigSet {
    /// `FilterReader.getOptions` + `getCombined`: the definition with caller `init` options
    /// (`mode=aggressive`, …) applied.
    pub fn resolve(&self, path: &Path, init: &OMap) -> Result<ResolvedOptions, LoadError> {
        let ierr = |section: &str, option: &str, reason: String| LoadError::Interpolation {
            path: path.to_path_buf(),
            section: section.into(),
            option: option.into(),
            reason,
        };
        let p_opts = init.clone();
        let mut init_opts = init.clone();
        let mut opts = OMap::default();
        for o in CONFIG_OPTS {
            if p_opts.contains(o) {
                continue;
            }
            match self.get("Definition", o, &p_opts) {
                Ok(v) => opts.set(o, v),
                Err(GetError::NoSection) | Err(GetError::NoOption) => {}
                Err(GetError::Interp(e)) => return Err(ierr("Definition", o, e)),
            }
        }
        if self.has_section("Init") {
            for o in self.own_options("Init") {
                let mut v: Option<String> = None;
                if !o.starts_with("known/") {
                    let x = match self.get("Init", &o, &OMap::default()) {
                        Ok(x) => x,
                        Err(GetError::Interp(e)) => return Err(ierr("Init", &o, e)),
                        Err(_) => continue,
                    };
                    init_opts.set(&format!("known/{o}"), x.clone());
                    v = Some(x);
                }
                if !init_opts.contains(&o) {
                    let x = match v {
                        Some(x) => x,
                        None => match self.get("Init", &o, &OMap::default()) {
                            Ok(x) => x,
                            Err(GetError::Interp(e)) => return Err(ierr("Init", &o, e)),
                            Err(_) => continue,
                        },
                    };
                    init_opts.set(&o, x);
                }
            }
        }
        let mut combined = opts.clone();
        for (k, v) in init_opts.0 {
            combined.set(&k, v);
        }
        let ignore: Vec<String> = combined
            .keys()
            .filter_map(|k| split_conditional(k).map(|(a, _)| a.to_string()))
            .collect();
        let mut cache: HashMap<String, Option<String>> = HashMap::new();
        let mut addrepl = |name: &str| -> Result<Option<String>, String> {
            if let Some(v) = cache.get(name) {
                return Ok(v.clone());
            }
            let v = match self.get_ex("Definition", name, &p_opts) {
                Ok(v) => Some(v),
                Err(GetError::NoSection) | Err(GetError::NoOption) => None,
                Err(GetError::Interp(e)) => return Err(format!("<{name}>: {e}")),
            };
            cache.insert(name.to_string(), v.clone());
            Ok(v)
        };
        substitute_tags(&mut combined, &ignore, &mut addrepl)
            .map_err(|e| ierr("Definition", "<tags>", e))?;
        let lines = |v: Option<&str>| -> Vec<String> {
            v.map(|v| {
                v.split('\n')
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
        };
        Ok(ResolvedOptions {
            prefregex: combined.get("prefregex").map(String::from),
            failregex: lines(combined.get("failregex")),
            ignoreregex: lines(combined.get("ignoreregex")),
            maxlines: combined.get("maxlines").map(String::from),
            datepattern: combined.get("datepattern").map(String::from),
            journalmatch: lines(combined.get("journalmatch")),
            usedns: combined.get("usedns").map(String::from),
            all: combined.0,
            files: self.files.clone(),
        })
    }
}
