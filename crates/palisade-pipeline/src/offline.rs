//! Offline runs over a log: `check` (filter only, like fail2ban-regex) and `replay` (the
//! whole detection on event time). They use the same sources, filters and engine as the
//! daemon, so what they report is what the daemon would do.

use crate::build::{build_engine_config, build_filter, time_zone, BuildError};
use palisade_config::Config;
use palisade_core::{Decision, Event, Timestamp};
use palisade_detect::{Action, Engine};
use palisade_filter::{Filter, LineCtx, Outcome};
use palisade_source::{LineMeta, SourceOptions, SourceSpec};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where an offline run reads from.
pub fn spec_for(path: &str) -> SourceSpec {
    if path == "-" {
        SourceSpec::Stdin
    } else {
        SourceSpec::Files {
            patterns: vec![path.to_string()],
        }
    }
}

/// Reads a whole log once (no follow, no saved position, a last line without a newline
/// included) and calls `f(line_no, line, ctx)` for every line; `progress(bytes)` now and
/// then. The one read loop of the offline runs (`check`, `replay`, `check --filter-file`). Returns the line count and the source's stats.
pub fn for_each_line(
    spec: &SourceSpec,
    max_line: usize,
    now: Timestamp,
    progress: &mut dyn FnMut(u64),
    mut f: impl FnMut(u64, &[u8], &LineCtx),
) -> Result<(u64, palisade_source::SourceStats), palisade_source::SourceError> {
    let opts = SourceOptions {
        from_start: true,
        follow: false,
        max_line,
        state_dir: None,
        ..SourceOptions::default()
    };
    let mut lines = 0u64;
    let stop = AtomicBool::new(false);
    let mut sink = |line: &[u8], meta: &LineMeta<'_>| {
        lines += 1;
        if lines & 0xffff == 0 {
            progress(meta.offset);
        }
        let ctx = LineCtx {
            now,
            source_time: meta.time,
            journal: meta.journal,
        };
        f(lines, line, &ctx);
    };
    // One named log (a file, or a pipe, FIFO or character device such as `/dev/stdin` or
    // `<(zcat …)`, which have no length and cannot be followed) is read as a stream to its
    // end, and a last line without a newline is delivered: the whole file is the input. (The
    // daemon's tailer holds such a line until it is completed, as it must for a live file.)
    let stream = match spec {
        SourceSpec::Files { patterns } if patterns.len() == 1 => std::fs::metadata(&patterns[0])
            .ok()
            .filter(|m| !m.is_dir())
            .map(|_| patterns[0].clone()),
        _ => None,
    };
    let stats = match stream {
        Some(path) => {
            let f = std::fs::File::open(&path).map_err(|e| {
                palisade_source::SourceError::Invalid(format!("cannot open {path}: {e}"))
            })?;
            palisade_source::run_reader(&path, f, &opts, &mut sink, &stop)?
        }
        None => palisade_source::run(spec, &opts, &mut sink, &stop)?,
    };
    Ok((lines, stats))
}

/// Called for every matched line: line number, the line, its events.
pub type OnMatch<'a> = &'a mut dyn FnMut(u64, &[u8], &[Event]);

/// What `check` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Lines read.
    pub lines: u64,
    /// Lines that produced an event.
    pub matched: u64,
    /// Lines of no interest.
    pub missed: u64,
    /// Lines that matched but were ignored (ignore rule, no usable address).
    pub ignored: u64,
    /// Lines longer than the cap (cut).
    pub cut_lines: u64,
    /// Events per rule, in the filter's rule order.
    pub rules: Vec<(String, u64)>,
    /// Lines whose header could not be read, per reason (non-zero reasons only).
    pub unreadable_header: Vec<(String, u64)>,
    /// Lines refused because the offender could not be told apart from attacker text.
    pub ambiguous: u64,
    /// Seconds taken.
    pub seconds: f64,
}

/// Runs one filter over a log. `on_match(line_no, line, events)` is called for every
/// matched line; `progress(bytes)` now and then.
pub fn check(
    filter: &mut dyn Filter,
    spec: &SourceSpec,
    max_line: usize,
    now: Timestamp,
    on_match: OnMatch<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<CheckReport, palisade_source::SourceError> {
    let rules: Vec<Arc<str>> = filter.rules().to_vec();
    let mut hits = vec![0u64; rules.len()];
    let mut rep = CheckReport::default();
    let mut out = Vec::new();
    let start = Instant::now();
    let (lines, stats) = for_each_line(spec, max_line, now, progress, |line_no, line, ctx| {
        match filter.process(line, ctx, &mut out) {
            Outcome::Matched => {
                rep.matched += 1;
                for e in &out {
                    if let Some(i) = rules
                        .iter()
                        .position(|r| Arc::ptr_eq(r, &e.rule) || *r == e.rule)
                    {
                        hits[i] += 1;
                    }
                }
                on_match(line_no, line, &out);
            }
            Outcome::Missed => rep.missed += 1,
            Outcome::Ignored => rep.ignored += 1,
        }
        out.clear();
    })?;
    rep.lines = lines;
    rep.cut_lines = stats.cut_lines;
    rep.seconds = start.elapsed().as_secs_f64();
    rep.rules = rules.iter().map(|r| r.to_string()).zip(hits).collect();
    let fs = filter.stats();
    rep.unreadable_header = fs
        .unreadable_reasons()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    rep.ambiguous = fs.ambiguous;
    Ok(rep)
}

/// What `replay` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Lines read.
    pub lines: u64,
    /// Failure events counted.
    pub failures: u64,
    /// Bans decided.
    pub bans: u64,
    /// Distinct targets banned.
    pub banned_targets: u64,
    /// Seconds taken.
    pub seconds: f64,
}

/// Errors of an offline replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Building a filter failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Reading failed.
    #[error(transparent)]
    Source(#[from] palisade_source::SourceError),
}

/// Runs every enabled jail of `cfg` over one log on event time and reports each ban through
/// `on_decision`. No store, no responders: nothing is enforced.
pub fn replay(
    cfg: &Config,
    spec: &SourceSpec,
    now: Timestamp,
    on_decision: &mut dyn FnMut(&Decision),
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, ReplayError> {
    let tz = time_zone(cfg)?;
    let mut filters: Vec<Box<dyn Filter>> = Vec::new();
    for j in cfg.jails.iter().filter(|j| j.enabled) {
        filters.push(build_filter(cfg, j, &tz)?);
    }
    let mut engine = Engine::new(build_engine_config(cfg));
    let mut rep = ReplayReport::default();
    let mut out = Vec::new();
    let mut actions = Vec::new();
    let mut targets = std::collections::HashSet::new();
    let start = Instant::now();
    let max_line = cfg.general.max_line;
    let (lines, _) = for_each_line(spec, max_line, now, progress, |_, line, ctx| {
        for (i, f) in filters.iter_mut().enumerate() {
            if f.process(line, ctx, &mut out) == Outcome::Matched {
                for e in &out {
                    if e.failure {
                        rep.failures += 1;
                    }
                    engine.observe(i, e, &mut actions);
                    for a in actions.drain(..) {
                        if let Action::Ban(d) = a {
                            rep.bans += 1;
                            targets.insert(d.target);
                            on_decision(&d);
                        }
                    }
                }
            }
            out.clear();
        }
    })?;
    rep.lines = lines;
    rep.banned_targets = targets.len() as u64;
    rep.seconds = start.elapsed().as_secs_f64();
    Ok(rep)
}

/// A decision as `replay --json` prints it.
pub fn decision_json(d: &Decision) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    if d.target.prefix_len() == d.target.max_prefix_len() {
        o.insert("ip".into(), d.target.addr().to_string().into());
    } else {
        o.insert("cidr".into(), d.target.to_string().into());
    }
    o.insert("jail".into(), d.jail.clone().into());
    o.insert("start".into(), d.created.to_string().into());
    o.insert(
        "duration".into(),
        d.duration()
            .map_or(serde_json::Value::Null, |x: Duration| x.as_secs().into()),
    );
    o.insert("origin".into(), d.origin.as_str().into());
    o.insert("reason".into(), d.reason.clone().into());
    serde_json::Value::Object(o)
}

/// What `check --filter-file` found (fail2ban semantics).
#[cfg(feature = "fail2ban")]
#[derive(Clone, Debug, Default)]
pub struct FilterFileReport {
    /// The filter file.
    pub filter: std::path::PathBuf,
    /// Seconds taken to load and compile it.
    pub load_secs: f64,
    /// Lines read.
    pub lines: u64,
    /// Lines with at least one failure.
    pub matched: u64,
    /// Failures (one line can hold several).
    pub failures: u64,
    /// Lines with only no-failure matches.
    pub nofail_lines: u64,
    /// Lines dropped by `ignoreregex`.
    pub ignored: u64,
    /// Lines of no interest.
    pub missed: u64,
    /// Lines longer than the cap (cut).
    pub cut_lines: u64,
    /// Failures per `failregex`, in order.
    pub hits: Vec<u64>,
    /// Seconds taken to read and match.
    pub seconds: f64,
}

/// Errors of `check --filter-file`.
#[cfg(feature = "fail2ban")]
#[derive(Debug, thiserror::Error)]
pub enum FilterFileError {
    /// The filter file could not be loaded.
    #[error("{0}")]
    Load(String),
    /// Reading failed.
    #[error(transparent)]
    Source(#[from] palisade_source::SourceError),
}

/// Runs a fail2ban filter file over a log with fail2ban's server semantics
/// (`checkAllRegex = False`: the first failregex that matches a line wins, as the daemon
/// counts). `fail2ban-regex` tries every failregex by default (its `--no-check-all` gives the
/// server behaviour); on filters where a line matches at most one failregex both report the
/// same lines. Each failure is reported at the line where fail2ban reports it (multi-line and
/// `<F-MLFID>` state included) with the host exactly as captured (`192.030.0.6`,
/// `example.com`): nothing is resolved or normalised, so what fail2ban would look up in DNS is
/// visible.
///
/// `options` are the filter's `[Init]` overrides (`mode=aggressive`, `logtype=journal`).
/// With `on_match`, each result is handed over as a JSON object (`line`, `time`, `ip`,
/// `fid` when the failure id is not the address, `rule`, `failure: false` for no-failure
/// matches, `user`, other captured fields), in line order.
#[cfg(feature = "fail2ban")]
pub fn check_filter_file(
    spec: &SourceSpec,
    filter_file: &std::path::Path,
    options: Vec<(String, String)>,
    now: Timestamp,
    max_line: usize,
    mut on_match: Option<&mut dyn FnMut(serde_json::Map<String, serde_json::Value>)>,
) -> Result<FilterFileReport, FilterFileError> {
    use palisade_fail2ban::date::TimeCx;
    use palisade_fail2ban::filter::{FilterDef, LoadOptions, MatchOptions, RawMatch};
    let journal = options
        .iter()
        .any(|(k, v)| k == "logtype" && v == "journal");
    let t0 = Instant::now();
    let def = FilterDef::load(
        filter_file,
        &LoadOptions {
            init: options,
            ..LoadOptions::default()
        },
    )
    .map_err(|e| FilterFileError::Load(e.to_string()))?;
    let mut rep = FilterFileReport {
        filter: def.path().to_path_buf(),
        load_secs: t0.elapsed().as_secs_f64(),
        hits: vec![0u64; def.failregex_count()],
        ..FilterFileReport::default()
    };
    let mut m = def.matcher(MatchOptions {
        journal,
        ..MatchOptions::default()
    });
    let cx = TimeCx {
        now,
        tz: jiff::tz::TimeZone::system(),
        default_offset_min: None,
    };
    let start = Instant::now();
    // one result per failure, in line order
    let mut sink = |line_no: u64, source_time: Option<Timestamp>, res: &[RawMatch]| {
        let (mut fail, mut nof) = (false, false);
        for r in res {
            let Some(fid) = r.fid.as_deref() else {
                continue; // waiting for its address (multi-line)
            };
            if r.nofail {
                nof = true;
            } else {
                fail = true;
                rep.failures += 1;
                if let Some(h) = rep.hits.get_mut(r.rule) {
                    *h += 1;
                }
            }
            let Some(on_match) = on_match.as_mut() else {
                continue;
            };
            let mut o = serde_json::Map::new();
            o.insert("line".into(), line_no.into());
            let t = r.time.or(source_time).unwrap_or(now);
            o.insert("time".into(), t.to_string().into());
            o.insert("ip".into(), r.host.as_deref().unwrap_or(fid).into());
            if r.host.is_none() || r.field("ip").is_some() {
                // the failure id is not the address (`<F-ID>`): show both
                o.insert("fid".into(), fid.into());
            }
            o.insert("rule".into(), format!("failregex[{}]", r.rule).into());
            if r.nofail {
                o.insert("failure".into(), false.into());
            }
            if let Some(u) = r.field("user") {
                o.insert("user".into(), u.into());
            }
            // `ip` is given above as the address; `users` (the connection's sorted set) as a
            // list.
            for (k, v) in palisade_fail2ban::adapter::reported_fields(r, true) {
                if k == "users" {
                    o.insert(k.into(), r.users.iter().map(|u| u.as_str()).collect());
                } else {
                    o.insert(k.into(), v.into());
                }
            }
            on_match(o);
        }
        if fail {
            rep.matched += 1;
        } else if nof {
            rep.nofail_lines += 1;
        }
    };
    // the log's lines as text, with the time journald gave them
    let feed = |f: &mut dyn FnMut(u64, &str, Option<Timestamp>)| {
        for_each_line(spec, max_line, now, &mut |_| {}, |no, line, ctx| {
            let given = journal.then(|| ctx.source_time.unwrap_or(now));
            match simdutf8::basic::from_utf8(line) {
                Ok(s) => f(no, s, given),
                // not UTF-8: read with replacement characters
                Err(_) => f(no, &String::from_utf8_lossy(line), given),
            }
        })
    };
    // Two stages on two threads when the filter allows it (same results, same order).
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let mut second = def.matcher(MatchOptions {
        journal,
        ..MatchOptions::default()
    });
    let (lines, stats) = if parallel && m.can_split() {
        palisade_fail2ban::filter::run_split(&mut m, &mut second, &cx, feed, |no, _, res| {
            // journal lines carry their time in the results already
            sink(no, None, res)
        })?
    } else {
        let mut res = Vec::new();
        feed(&mut |no, text, given| {
            res.clear();
            m.process_line(text, given, &cx, &mut res);
            sink(no, given, &res);
        })?
    };
    rep.seconds = start.elapsed().as_secs_f64();
    let ms = m.stats().plus(second.stats());
    rep.lines = lines;
    rep.ignored = ms.ignored;
    rep.cut_lines = stats.cut_lines;
    rep.missed = lines.saturating_sub(rep.matched + rep.nofail_lines + ms.ignored);
    Ok(rep)
}
