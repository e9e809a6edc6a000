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

/// Reads a whole log once (no follow, no saved position) and calls `f(line_no, line, ctx)`
/// for every line; `progress(bytes)` now and then. The one read loop of the offline runs
/// (`check`, `replay`, `check --filter-file`). Returns the line count and the source's stats.
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
    let stats = palisade_source::run(spec, &opts, &mut sink, &stop)?;
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
