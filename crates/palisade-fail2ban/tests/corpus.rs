//! Conformance with fail2ban's annotated sample-log corpus.
//!
//! Walks `/usr/lib/python3/dist-packages/fail2ban/tests/files/logs/` exactly as fail2ban's
//! `samplestestcase.py` does (see `../shared/bench/fail2ban-corpus.md`): `failJSON` for the
//! next line, `filterOptions` variants (cached filter state per option combination),
//! `fileOptions`, `addFILE`, journal variants with `test.prefix-line`, `test.condition` and
//! `constraint` expressions, frozen time 2005-08-14 12:00 CEST, every failregex tried, exactly
//! one result per matching line, exact host/user/time/other fields. The filters are read from
//! `/etc/fail2ban/filter.d` (the `zzz-*` test filters from fail2ban's test config; their broken
//! relative `before = …/config/filter.d/common.conf` is resolved by file name in
//! `/etc/fail2ban/filter.d`). The corpus and filters are GPL and are only read at run time.

use jiff::tz::TimeZone;
use palisade_core::Timestamp;
use palisade_fail2ban::adapter::reported_fields;
use palisade_fail2ban::date::TimeCx;
use palisade_fail2ban::filter::{ipaddr_string, FilterDef, LoadOptions, MatchOptions, Matcher};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const LOGS: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";
const CONF: &str = "/etc/fail2ban/filter.d";
const TCONF: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/config/filter.d";
const TEST_NOW: i64 = 1_124_013_600;
const TZ: &str = "CET-01CEST-02,M3.5.0,M10.5.0";

fn tests() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (dir, zzz) in [(CONF, false), (TCONF, true)] {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for f in names {
            let ok = if zzz {
                f.starts_with("zzz-") && f.ends_with(".conf")
            } else {
                f.ends_with(".conf") && !f.ends_with("common.conf")
            };
            if ok {
                let n = f.trim_end_matches(".conf").to_string();
                out.push((n, Path::new(dir).join(&f)));
            }
        }
    }
    out
}

fn family(name: &str) -> &'static str {
    if name.starts_with("sshd") || name.starts_with("zzz-sshd") {
        return "sshd";
    }
    if name.starts_with("nginx") {
        return "nginx-*";
    }
    if name.starts_with("apache") {
        return "apache-*";
    }
    "other"
}

/// The handful of Python expression shapes the corpus uses:
/// `name == 'x'`, `opts.get('k') == 'v'`, `!=`, joined by `and`/`or`.
fn eval_cond(expr: &str, name: &str, opts: &BTreeMap<String, Value>) -> bool {
    if let Some((a, b)) = expr.split_once(" or ") {
        return eval_cond(a, name, opts) || eval_cond(b, name, opts);
    }
    if let Some((a, b)) = expr.split_once(" and ") {
        return eval_cond(a, name, opts) && eval_cond(b, name, opts);
    }
    let (lhs, op, rhs) = if let Some((l, r)) = expr.split_once("==") {
        (l, "==", r)
    } else if let Some((l, r)) = expr.split_once("!=") {
        (l, "!=", r)
    } else {
        panic!("unsupported condition {expr:?}");
    };
    let lit = |s: &str| -> Option<String> {
        let s = s.trim();
        if s == "None" {
            return None;
        }
        Some(s.trim_matches(|c| c == '\'' || c == '"').to_string())
    };
    let lhs = lhs.trim();
    let l: Option<String> = if lhs == "name" {
        Some(name.to_string())
    } else if let Some(k) = lhs
        .strip_prefix("opts.get(")
        .and_then(|x| x.strip_suffix(')'))
    {
        let k = k.trim().trim_matches(|c| c == '\'' || c == '"');
        opts.get(k).and_then(|v| v.as_str().map(String::from))
    } else {
        panic!("unsupported condition {expr:?}");
    };
    let r = lit(rhs);
    match op {
        "==" => l == r,
        _ => l != r,
    }
}

fn local_ts(tz: &TimeZone, s: &str) -> i64 {
    // Python strptime("%Y-%m-%dT%H:%M:%S[.%f]"): fields need not be zero-padded
    let (d, t) = s.split_once('T').expect("failJSON time has a T");
    let (t, frac) = t.split_once('.').unwrap_or((t, ""));
    let n = |x: &str| x.parse::<i64>().expect("failJSON time number");
    let dp: Vec<i64> = d.split('-').map(n).collect();
    let tp: Vec<i64> = t.split(':').map(n).collect();
    let dt = jiff::civil::date(dp[0] as i16, dp[1] as i8, dp[2] as i8).at(
        tp[0] as i8,
        tp[1] as i8,
        tp[2] as i8,
        0,
    );
    let secs = tz
        .to_ambiguous_timestamp(dt)
        .compatible()
        .expect("valid local time")
        .as_second();
    let mut micros = 0i64;
    if !frac.is_empty() {
        let f = format!("{frac:0<6}");
        micros = f[..6].parse().expect("fraction");
    }
    secs * 1_000_000 + micros
}

/// fail2ban's `IPAddr` equality against the expected string.
fn host_eq(got: &str, want: &str) -> bool {
    let mut w = want;
    if w.len() > 2 && w.starts_with('[') && w.ends_with(']') {
        w = &w[1..w.len() - 1];
    }
    let norm = match w.split_once('/') {
        Some((ip, plen)) => match plen.parse::<u8>() {
            Ok(p) => ipaddr_string(ip, Some(p), None),
            Err(_) => w.to_string(),
        },
        None => ipaddr_string(w, None, None),
    };
    got == norm || got == want
}

struct Variant {
    flt_name: String,
    opts: BTreeMap<String, Value>,
}

struct Check {
    test: String,
    file: String,
    line_no: usize,
    variant: String,
    ok: bool,
    detail: String,
}

type Cache = HashMap<String, (Matcher, HashSet<usize>)>;

fn load(name: &str, path: &Path, opts: &BTreeMap<String, Value>) -> Result<Matcher, String> {
    let init: Vec<(String, String)> = opts
        .iter()
        .filter(|(k, _)| !k.starts_with("test."))
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let lo = LoadOptions {
        init,
        include_fallback: vec![PathBuf::from(CONF)],
        now_year: None,
    };
    let def: Arc<FilterDef> = FilterDef::load(path, &lo).map_err(|e| format!("{name}: {e}"))?;
    let journal = opts.get("logtype").and_then(Value::as_str) == Some("journal");
    Ok(def.matcher(MatchOptions {
        check_all: true,
        journal,
        ..MatchOptions::default()
    }))
}

fn py_opts_name(opts: &BTreeMap<String, Value>) -> String {
    // only used as a cache key: fail2ban uses str(dict) of the non-test options
    let v: Vec<String> = opts
        .iter()
        .filter(|(k, _)| !k.starts_with("test."))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if v.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", v.join(", "))
    }
}

fn run_test(
    name: &str,
    path: &Path,
    cx: &TimeCx,
    tz: &TimeZone,
    checks: &mut Vec<Check>,
    unused: &mut Vec<String>,
) {
    let jre = regex::Regex::new(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$").unwrap();
    let mut cache: Cache = HashMap::new();
    let mut used_re: HashSet<String> = HashSet::new();
    let mut filenames = vec![name.to_string()];
    let mut common: BTreeMap<String, Value> = BTreeMap::new();
    let mut filter_tests: Option<Vec<Variant>> = None;
    let mut i = 0;
    while i < filenames.len() {
        let fname = filenames[i].clone();
        i += 1;
        let bytes = match std::fs::read(Path::new(LOGS).join(&fname)) {
            Ok(b) => b,
            Err(e) => {
                checks.push(Check {
                    test: name.into(),
                    file: fname.clone(),
                    line_no: 0,
                    variant: String::new(),
                    ok: false,
                    detail: format!("cannot read log: {e}"),
                });
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut lines: Vec<&str> = text.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }
        let mut ignore_block = false;
        let mut it = lines.iter().enumerate().map(|(n, l)| (n + 1, *l));
        while let Some((mut lnnum, mut line)) = it.next() {
            let mut faildata: serde_json::Map<String, Value> = serde_json::Map::new();
            if let Some(m) = jre.captures(line) {
                let v: Value = serde_json::from_str(&m[2]).expect("corpus JSON");
                match &m[1] {
                    "fileOptions" => {
                        common = v
                            .as_object()
                            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                            .unwrap_or_default();
                        continue;
                    }
                    "filterOptions" => {
                        let mut ft = Vec::new();
                        ignore_block = false;
                        let list = match v {
                            Value::Array(a) => a,
                            other => vec![other],
                        };
                        for o in list {
                            let mut opts = common.clone();
                            for (k, v) in o.as_object().expect("dict") {
                                opts.insert(k.clone(), v.clone());
                            }
                            if let Some(c) = opts.get("test.condition").and_then(Value::as_str) {
                                ignore_block = !eval_cond(c, name, &opts);
                            }
                            if !ignore_block {
                                let fname =
                                    match opts.get("test.filter-name").and_then(Value::as_str) {
                                        Some(n) => n.to_string(),
                                        None => py_opts_name(&opts),
                                    };
                                ft.push(Variant {
                                    flt_name: format!("{name}{fname}"),
                                    opts,
                                });
                            }
                        }
                        filter_tests = Some(ft);
                        continue;
                    }
                    "addFILE" => {
                        filenames.push(v.as_str().expect("file name").to_string());
                        continue;
                    }
                    _ => {
                        faildata = v.as_object().cloned().unwrap_or_default();
                        match it.next() {
                            Some((n, l)) => {
                                lnnum = n;
                                line = l;
                            }
                            None => break,
                        }
                    }
                }
            } else if ignore_block || line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if ignore_block {
                continue;
            }
            let variants = filter_tests.get_or_insert_with(|| {
                vec![Variant {
                    flt_name: name.to_string(),
                    opts: BTreeMap::new(),
                }]
            });
            let line = line.trim_end_matches(['\r', '\n']);
            for var in variants.iter() {
                if let Some(c) = faildata.get("constraint").and_then(Value::as_str) {
                    if !eval_cond(c, name, &var.opts) {
                        continue;
                    }
                }
                let mut check = Check {
                    test: name.into(),
                    file: fname.clone(),
                    line_no: lnnum,
                    variant: var.flt_name.clone(),
                    ok: true,
                    detail: String::new(),
                };
                if !cache.contains_key(&var.flt_name) {
                    match load(name, path, &var.opts) {
                        Ok(m) => {
                            cache.insert(var.flt_name.clone(), (m, HashSet::new()));
                        }
                        Err(e) => {
                            check.ok = false;
                            check.detail = format!("load error: {e}");
                            checks.push(check);
                            continue;
                        }
                    }
                }
                let (matcher, used) = cache.get_mut(&var.flt_name).expect("cached");
                let journal = var.opts.get("logtype").and_then(Value::as_str) == Some("journal");
                let mut out = Vec::new();
                if journal {
                    let prefix = var
                        .opts
                        .get("test.prefix-line")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let l = format!("{prefix}{line}");
                    matcher.process_line(&l, Some(Timestamp::from_secs(TEST_NOW)), cx, &mut out);
                } else {
                    matcher.process_line(line, None, cx, &mut out);
                }
                let sources: Vec<String> = matcher
                    .def()
                    .failregex_sources()
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let mut found = Vec::new();
                for r in out {
                    if r.fid.is_none() || r.nofail {
                        used.insert(r.rule);
                        used_re.insert(sources[r.rule].clone());
                        continue;
                    }
                    found.push(r);
                }
                let want_match = faildata
                    .get("match")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let mut problems = Vec::new();
                if found.is_empty() {
                    if want_match {
                        problems.push("line not matched when should have".to_string());
                    }
                } else if !want_match {
                    problems.push(format!(
                        "line matched when shouldn't have (rules {:?}, host {:?})",
                        found.iter().map(|r| r.rule).collect::<Vec<_>>(),
                        found[0].fid
                    ));
                } else if found.len() != 1 {
                    problems.push(format!(
                        "multiple regexs matched {:?}",
                        found.iter().map(|r| r.rule).collect::<Vec<_>>()
                    ));
                } else {
                    let r = &found[0];
                    // Every field is compared as Palisade reports it (`reported_fields`: what
                    // events and `check --filter-file --json` carry), not from the raw result,
                    // so a field the matcher finds but the report drops is a disagreement.
                    let reported: BTreeMap<&str, String> = reported_fields(r, false).collect();
                    let get = |k: &str| -> Option<String> {
                        if k == "user" {
                            // the event's user
                            r.field("user").map(String::from)
                        } else {
                            reported.get(k).cloned()
                        }
                    };
                    for (k, v) in &faildata {
                        if matches!(k.as_str(), "time" | "match" | "desc" | "constraint") {
                            continue;
                        }
                        let ok = match k.as_str() {
                            "host" if get("host").is_none() => match (&r.fid, v) {
                                (Some(f), Value::String(w)) => host_eq(f, w),
                                (None, Value::Null) => true,
                                _ => false,
                            },
                            "attempts" if get("attempts").is_none() => {
                                v.as_u64() == Some(r.matches as u64)
                            }
                            "users" => {
                                let mut want: Vec<String> = v
                                    .as_array()
                                    .map(|a| {
                                        a.iter()
                                            .filter_map(|x| x.as_str().map(String::from))
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                want.sort();
                                want.dedup();
                                let got = get("users").unwrap_or_default();
                                let mut got: Vec<&str> =
                                    got.split(',').filter(|u| !u.is_empty()).collect();
                                got.sort_unstable();
                                want.iter().map(String::as_str).eq(got)
                            }
                            _ => match (get(k), v) {
                                (None, Value::Null) => true,
                                (Some(g), Value::String(w)) => g == *w,
                                (Some(g), other) => {
                                    let o = other.to_string();
                                    g == o
                                }
                                (None, _) => false,
                            },
                        };
                        if !ok {
                            let got = match k.as_str() {
                                "host" => format!("{:?}", r.fid),
                                "attempts" => r.matches.to_string(),
                                _ => format!("{:?}", get(k)),
                            };
                            problems.push(format!("{k}: expected {v}, got {got}"));
                        }
                    }
                    if let Some(t) = faildata.get("time").and_then(Value::as_str) {
                        let want = local_ts(tz, t);
                        match r.time {
                            Some(g) if g.0 == want => {}
                            other => problems.push(format!(
                                "time: expected {t} ({want}), got {:?}",
                                other.map(|x| x.to_string())
                            )),
                        }
                    }
                    used.insert(r.rule);
                    used_re.insert(sources[r.rule].clone());
                }
                if !problems.is_empty() {
                    check.ok = false;
                    check.detail = format!("{}\n      line: {line}", problems.join("; "));
                }
                checks.push(check);
            }
        }
    }
    for (fname, (m, used)) in &cache {
        for (idx, src) in m.def().failregex_sources().iter().enumerate() {
            if !used.contains(&idx) && !used_re.contains(*src) {
                unused.push(format!("{fname}: failregex[{idx}] has no samples"));
            }
        }
    }
}

#[test]
fn fail2ban_corpus() {
    if !Path::new(LOGS).is_dir() || !Path::new(CONF).is_dir() {
        return palisade_testkit::require_or_skip(
            "F2B",
            &format!("fail2ban corpus: {LOGS} or {CONF} not found (apt-get install fail2ban)"),
        );
    }
    let tz = TimeZone::posix(TZ).expect("posix tz");
    let cx = TimeCx {
        now: Timestamp::from_secs(TEST_NOW),
        tz: tz.clone(),
        default_offset_min: None,
    };
    let only = std::env::var("F2B_ONLY").ok();
    let mut checks = Vec::new();
    let mut unused = Vec::new();
    for (name, path) in tests() {
        if let Some(o) = &only {
            if !name.starts_with(o.as_str()) {
                continue;
            }
        }
        run_test(&name, &path, &cx, &tz, &mut checks, &mut unused);
    }
    let total = checks.len();
    let agree = checks.iter().filter(|c| c.ok).count();
    let mut fam: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in &checks {
        let e = fam.entry(family(&c.test)).or_default();
        e.1 += 1;
        if c.ok {
            e.0 += 1;
        }
    }
    for c in checks.iter().filter(|c| !c.ok) {
        println!(
            "DISAGREE {} [{}] {}:{}: {}",
            c.test, c.variant, c.file, c.line_no, c.detail
        );
    }
    for u in &unused {
        println!("NOTE {u}");
    }
    for (f, (a, t)) in &fam {
        println!("family {f}: {a}/{t}");
    }
    println!("fail2ban corpus: {agree}/{total} checks agree");
    if only.is_none() {
        assert_eq!(total, 1627, "the walk must visit 1,627 checks");
        for f in ["sshd", "nginx-*", "apache-*"] {
            let (a, t) = fam.get(f).copied().unwrap_or_default();
            assert_eq!(a, t, "family {f} must agree 100 %");
        }
        assert!(agree * 100 >= total * 99, "overall agreement below 99 %");
    }
}
