//! The long-running daemon (`palisade run`).
//!
//! ```text
//! source threads ──(bounded, batches of events)──▶ engine thread ──▶ responder thread
//!   (filters inline)                                  │  ▲                 (ban lands first)
//!                                                     │  └── control socket thread
//!                                                     └──▶ store writer thread (batched)
//! ```

use crate::build::{build_engine_config, build_filter, build_responder, time_zone, BuildError};
use crate::control::{self, ControlError, Reply, Request};
use crossbeam_channel::{bounded, select, Receiver, Sender};
use ipnet::IpNet;
use palisade_config::Config;
use palisade_core::{Allowlist, Clock, Decision, Event, Observer, Origin, Timestamp};
use palisade_detect::{Action, Engine, UnbanReason};
use palisade_filter::{Filter, LineCtx, Outcome};
use palisade_proto::status::{
    Counters, EngineCounters, JailStatus, Lag, ResponderHealth, SourceState, SourceStatus,
    StatusReport, StoreHealth,
};
use palisade_respond::Responder;
use palisade_source::{
    InputState, LineMeta, LineSink, Position, SourceHealth, SourceOptions, SourceSpec,
};
use palisade_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Events per batch sent from a source thread to the engine.
const BATCH: usize = 256;
/// Event batches buffered between sources and the engine (back-pressure beyond).
const EVENT_QUEUE: usize = 256;
/// Messages buffered towards the store writer (back-pressure beyond: events are not dropped,
/// since a source position may only pass lines whose events are stored).
const STORE_QUEUE: usize = 1024;
/// Event batches the store writer merges into one transaction at most.
const STORE_COALESCE: usize = 64;
/// Events of one source held by the store writer while waiting for a position, at most.
const UNACKED_MAX: usize = 1_000_000;
/// Events read back from the store at start to restore the jails' failure counts, at most.
const WARM_UP_MAX: usize = 1_000_000;

/// Start-up failure. Nothing keeps running when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A part could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] palisade_store::StoreError),
    /// The control socket or state folder could not be set up.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A responder failed to reconcile at start.
    #[error("responder {0}: reconcile failed: {1}")]
    Reconcile(String, String),
}

/// A cloneable handle to send control requests to the running daemon in-process (the same
/// requests the control socket accepts).
#[derive(Clone)]
pub struct ControlHandle {
    tx: Sender<EngineMsg>,
    supervisor: Supervisor,
}

impl ControlHandle {
    /// Sends a request and waits for the answer (at most 20 s; a reload 60 s).
    pub fn call(&self, req: Request) -> Result<Reply, ControlError> {
        let (rtx, rrx) = bounded(1);
        let wait = if req == Request::Reload {
            self.supervisor.reload(Some(rtx));
            Duration::from_secs(60)
        } else {
            if self.tx.send(EngineMsg::Control(req, rtx)).is_err() {
                return Err(ControlError::Unavailable("the daemon is stopping".into()));
            }
            Duration::from_secs(20)
        };
        rrx.recv_timeout(wait).unwrap_or_else(|_| {
            Err(ControlError::Unavailable(
                "the daemon did not answer".into(),
            ))
        })
    }
}

/// Where a reload's answer goes (`None`: a signal asked, nobody waits).
pub type ReloadReply = Option<Sender<Result<Reply, ControlError>>>;

/// What the thread that owns the [`Daemon`] is asked to do (see [`Daemon::wait`]).
pub enum Supervise {
    /// Re-read the configuration and apply it; answer through [`Daemon::reload_with`].
    Reload(ReloadReply),
    /// Stop.
    Stop,
}

/// Asks the thread that owns the [`Daemon`] to reload or stop: from a signal handler
/// thread, or from a `reload` control request. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    tx: Sender<Supervise>,
}

impl Supervisor {
    /// Asks for a reload; `reply` gets the outcome.
    pub fn reload(&self, reply: ReloadReply) {
        if let Err(e) = self.tx.send(Supervise::Reload(reply)) {
            if let Supervise::Reload(Some(r)) = e.into_inner() {
                let _ = r.send(Err(ControlError::Unavailable(
                    "the daemon is stopping".into(),
                )));
            }
        }
    }
    /// Asks the daemon's owner to stop.
    pub fn stop(&self) {
        let _ = self.tx.send(Supervise::Stop);
    }
}

/// Options of a daemon run beyond the configuration file.
pub struct DaemonOptions {
    /// Read file history when no offset is saved (default: start at the end).
    pub from_start: bool,
    /// Keep following files (false: read to the end, then stop; for batch runs and tests).
    pub follow: bool,
    /// Wall clock (expiry, year inference).
    pub clock: Arc<dyn Clock>,
    /// Told about events and decisions (live feed, notifiers).
    pub observer: Option<Arc<dyn Observer>>,
    /// Where the configuration came from, for status (`/etc/palisade/palisade.toml`).
    pub config_name: String,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            from_start: false,
            follow: true,
            clock: Arc::new(palisade_core::SystemClock),
            observer: None,
            config_name: String::new(),
        }
    }
}

/// Counters shared by all threads (status, metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Lines read by all sources.
    pub lines: AtomicU64,
    /// Events produced by filters.
    pub events: AtomicU64,
    /// Events not stored. Since acknowledged positions, events are no longer dropped when the
    /// store writer lags (the sources wait instead); this counts events of a batch whose
    /// transaction failed.
    pub events_dropped: AtomicU64,
    /// Decisions taken.
    pub decisions: AtomicU64,
    /// Responder failures (every failed apply, retry, revoke or reconcile).
    pub responder_errors: AtomicU64,
    /// Applies retried after a failure.
    pub responder_retries: AtomicU64,
    /// Decisions waiting for a retry of a failed apply.
    pub responder_pending: AtomicU64,
    /// Failed applies given up after [`RETRY_MAX`] attempts (the periodic reconcile tries
    /// them again).
    pub responder_given_up: AtomicU64,
    /// Store failures.
    pub store_errors: AtomicU64,
    /// Source positions stored (acknowledged: their lines' events and decisions committed).
    pub positions_acked: AtomicU64,
    /// Set when a store failure stopped positions from moving for the rest of the run (the
    /// lines since are read again after a restart; their events may then be stored twice).
    pub positions_held: AtomicBool,
    /// Lines whose syslog header could not be read (counted, never silently dropped).
    pub header_rejects: AtomicU64,
    /// Lines refused because their offender could not be told apart from attacker text.
    pub ambiguous_lines: AtomicU64,
    /// Source failures.
    pub source_errors: AtomicU64,
    /// Jails skipped because their filter could not be built (at start or reload).
    pub filter_errors: AtomicU64,
    /// Why each skipped jail of the running configuration was skipped (`jail "x": …`).
    pub jail_errors: Mutex<Vec<String>>,
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Refused or failed reloads.
    pub reload_failures: AtomicU64,
    /// Health (status only; off the hot path).
    health: Mutex<Health>,
    /// Lines and the wall time of the last line, per input (file path, `journald`, `stdin`).
    source_lines: Mutex<BTreeMap<String, (u64, Timestamp)>>,
    /// Lines per second, as `f64` bits.
    rate: AtomicU64,
}

/// What status reports beyond counters.
#[derive(Debug, Default)]
struct Health {
    version: String,
    started: Timestamp,
    config: String,
    time_zone: String,
    store: StoreHealth,
    responders: BTreeMap<String, ResponderHealth>,
    last_ban: Option<Decision>,
    sources: Vec<SourceEntry>,
}

/// A running source group, for status.
#[derive(Debug)]
struct SourceEntry {
    key: String,
    files: bool,
    health: Arc<SourceHealth>,
    /// Set when its thread ended: `Some(error)` if it failed.
    ended: Option<Option<String>>,
}

/// The health entry of responder `name`, made (healthy or not, `ok`) when it is new: the name
/// is copied only then, not on every apply and revoke that reports here.
fn responder_entry<'a>(
    map: &'a mut BTreeMap<String, ResponderHealth>,
    name: &str,
    ok: bool,
) -> &'a mut ResponderHealth {
    if !map.contains_key(name) {
        let e = ResponderHealth {
            name: name.to_owned(),
            ok,
            ..ResponderHealth::default()
        };
        map.insert(name.to_owned(), e);
    }
    map.get_mut(name).expect("inserted above")
}

impl Stats {
    /// Counts a failure of `responder` (also in its health entry).
    fn responder_failed(&self, responder: &str, what: &str, error: &str) {
        self.responder_errors.fetch_add(1, Relaxed);
        self.responder_result(responder, Err(format!("{what}: {error}")));
        tracing::error!(responder, error, "{what} failed");
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters, as status reports them.
    pub fn counters(&self) -> Counters {
        Counters {
            lines: self.lines.load(Relaxed),
            events: self.events.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            decisions: self.decisions.load(Relaxed),
            responder_errors: self.responder_errors.load(Relaxed),
            store_errors: self.store_errors.load(Relaxed),
            source_errors: self.source_errors.load(Relaxed),
            filter_errors: self.filter_errors.load(Relaxed),
            reloads: self.reloads.load(Relaxed),
            reload_failures: self.reload_failures.load(Relaxed),
            header_rejects: self.header_rejects.load(Relaxed),
            ambiguous_lines: self.ambiguous_lines.load(Relaxed),
            jail_errors: self.jail_errors.lock().unwrap().clone(),
            responder_retries: self.responder_retries.load(Relaxed),
            responder_pending: self.responder_pending.load(Relaxed),
            responder_given_up: self.responder_given_up.load(Relaxed),
            positions_acked: self.positions_acked.load(Relaxed),
            positions_held: self.positions_held.load(Relaxed),
        }
    }

    /// Records the outcome of a call to `name` in its health entry.
    fn responder_result(&self, name: &str, r: Result<(), String>) {
        let mut h = self.health();
        let e = responder_entry(&mut h.responders, name, false);
        match r {
            Ok(()) => e.ok = true,
            Err(msg) => {
                e.ok = false;
                e.failures += 1;
                e.last_error = Some(msg);
            }
        }
    }

    fn store_result(&self, r: Result<(), String>) {
        let mut h = self.health();
        match r {
            Ok(()) => h.store.ok = true,
            Err(msg) => {
                h.store.ok = false;
                h.store.failures += 1;
                h.store.last_error = Some(msg);
            }
        }
    }

    /// Per-input status of the sources running now.
    fn sources(&self) -> Vec<SourceStatus> {
        let lines = self.source_lines.lock().unwrap_or_else(|e| e.into_inner());
        let seen = |path: &str| lines.get(path).copied().unwrap_or_default();
        let mut out = Vec::new();
        for s in &self.health().sources {
            let failed = s.ended.clone().flatten();
            let stopped = s.ended.is_some();
            let inputs: Vec<(String, Option<InputState>, Option<String>)> = if s.files {
                s.health
                    .snapshot()
                    .into_iter()
                    .map(|(p, h)| (p, Some(h.state), h.error))
                    .collect()
            } else {
                // journald, stdin: the name lines carry.
                let name = s.key.split(' ').next().unwrap_or("").to_owned();
                vec![(name, None, None)]
            };
            let before = out.len();
            for (path, state, error) in inputs {
                let (n, last) = seen(&path);
                let state = match state {
                    _ if stopped => SourceState::Stopped,
                    Some(InputState::Missing) => SourceState::Missing,
                    Some(InputState::Unreadable) => SourceState::Unreadable,
                    Some(InputState::Rotated) => SourceState::Rotated,
                    Some(InputState::Ok) | None => SourceState::Ok,
                };
                out.push(SourceStatus {
                    path: if s.files { path } else { s.key.clone() },
                    state,
                    lines: n,
                    last_line: (n > 0).then_some(last),
                    error: failed.clone().or(error),
                });
            }
            if out.len() == before && (failed.is_some() || s.files) {
                // A glob that matches nothing yet, or a source that failed before reading.
                out.push(SourceStatus {
                    path: s.key.clone(),
                    state: if stopped {
                        SourceState::Stopped
                    } else {
                        SourceState::Missing
                    },
                    error: failed,
                    ..SourceStatus::default()
                });
            }
        }
        out
    }
}

/// Which source a batch comes from (its key in the store's positions; `None` for stdin,
/// which has no position) and, when the source gave one, the position that covers the batch
/// and every earlier line of that source.
type SourcePos = (Option<Arc<str>>, Option<Position>);

enum EngineMsg {
    /// Events of one source, with its [`SourcePos`].
    Events(Vec<(u16, Event)>, SourcePos),
    Control(Request, Sender<Result<Reply, ControlError>>),
    Reconfigure(
        Box<palisade_detect::EngineConfig>,
        Box<ResponderSet>,
        Vec<String>,
    ),
    Stop,
}

enum RespMsg {
    Apply(Vec<Decision>),
    Revoke(Vec<Decision>, UnbanReason),
    Reconcile(Vec<Decision>),
    Replace(Box<ResponderSet>),
    /// Answered once every earlier message has been handled, with the failures of the last
    /// apply of each given target (empty: all applied).
    Barrier(Sender<Vec<String>>, Vec<IpNet>),
    Stop,
}

enum StoreMsg {
    /// Events of one source batch, per jail, and their [`SourcePos`]. Events of a source with
    /// positions are held until a position covering them comes, then stored with it in one
    /// transaction, after every decision sent before it.
    Batch(Vec<(String, Vec<Event>)>, SourcePos),
    Decision(Decision),
    Revoke(IpNet),
    Stop,
}

/// The responders and which jail uses which.
pub struct ResponderSet {
    responders: Vec<Box<dyn Responder>>,
    routes: HashMap<String, Vec<usize>>,
    default: Vec<usize>,
}

impl ResponderSet {
    /// Builds every responder the configuration uses.
    pub fn build(cfg: &Config) -> Result<Self, BuildError> {
        let mut names: Vec<String> = Vec::new();
        let idx = |n: &str, names: &mut Vec<String>| match names.iter().position(|x| x == n) {
            Some(i) => i,
            None => {
                names.push(n.to_string());
                names.len() - 1
            }
        };
        let mut routes = HashMap::new();
        for j in cfg.jails.iter().filter(|j| j.enabled) {
            let v = cfg
                .jail_responders(j)
                .iter()
                .map(|n| idx(n, &mut names))
                .collect();
            routes.insert(j.name.get_ref().clone(), v);
        }
        let default = cfg
            .defaults
            .responders
            .iter()
            .map(|n| idx(n, &mut names))
            .collect();
        let mut responders = Vec::new();
        for n in &names {
            let sec = cfg.responder(n).ok_or_else(|| BuildError::Responder {
                name: n.clone(),
                message: "not declared".into(),
            })?;
            responders.push(build_responder(&sec)?);
        }
        Ok(ResponderSet {
            responders,
            routes,
            default,
        })
    }

    /// Lists the responders in the health report (healthy until a failure).
    fn register(&self, stats: &Stats) {
        let mut h = stats.health();
        let names: Vec<&str> = self.responders.iter().map(|r| r.name()).collect();
        h.responders.retain(|n, _| names.contains(&n.as_str()));
        for n in names {
            responder_entry(&mut h.responders, n, true);
        }
    }

    fn targets(&self, d: &Decision) -> &[usize] {
        self.routes.get(&d.jail).unwrap_or(&self.default)
    }

    /// Applies `ds` to their responders; returns the batches that failed (responder index,
    /// batch, error).
    fn apply(
        &mut self,
        ds: &[Decision],
        now: Timestamp,
        stats: &Stats,
    ) -> Vec<(usize, Vec<Decision>, String)> {
        let mut per: Vec<Vec<Decision>> = vec![Vec::new(); self.responders.len()];
        for d in ds.iter().filter(|d| !d.simulated && d.active_at(now)) {
            for &i in self.targets(d) {
                per[i].push(d.clone());
            }
        }
        let mut failed = Vec::new();
        for (i, batch) in per.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = self.apply_one(i, &batch, now, stats) {
                failed.push((i, batch, e));
            }
        }
        failed
    }

    /// Applies a batch to responder `i`, counting a failure.
    fn apply_one(
        &mut self,
        i: usize,
        batch: &[Decision],
        now: Timestamp,
        stats: &Stats,
    ) -> Result<(), String> {
        let r = &mut self.responders[i];
        match r.apply(batch, now) {
            Ok(()) => {
                stats.responder_result(r.name(), Ok(()));
                Ok(())
            }
            Err(e) => {
                let e = e.to_string();
                stats.responder_failed(r.name(), "apply", &e);
                Err(e)
            }
        }
    }

    fn revoke(&mut self, ds: &[Decision], reason: UnbanReason, stats: &Stats) {
        let mut per: Vec<Vec<Decision>> = vec![Vec::new(); self.responders.len()];
        for d in ds.iter().filter(|d| !d.simulated) {
            for &i in self.targets(d) {
                if reason == UnbanReason::Expired && self.responders[i].expires_natively_for(d) {
                    continue;
                }
                per[i].push(d.clone());
            }
        }
        for (i, batch) in per.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            match self.responders[i].revoke(&batch) {
                Ok(()) => stats.responder_result(self.responders[i].name(), Ok(())),
                Err(e) => {
                    stats.responder_failed(self.responders[i].name(), "revoke", &e.to_string())
                }
            }
        }
    }

    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<(), DaemonError> {
        for (i, r) in self.responders.iter_mut().enumerate() {
            let mine = |d: &&Decision| {
                !d.simulated
                    && d.active_at(now)
                    && self
                        .routes
                        .get(&d.jail)
                        .unwrap_or(&self.default)
                        .contains(&i)
            };
            // Usually one responder takes every ban: pass the slice as is, no copy.
            let res = if active.iter().all(|d| mine(&d)) {
                r.reconcile(active, now)
            } else {
                let v: Vec<Decision> = active.iter().filter(mine).cloned().collect();
                r.reconcile(&v, now)
            };
            res.map_err(|e| DaemonError::Reconcile(r.name().to_string(), e.to_string()))?;
        }
        Ok(())
    }
}

/// Lines feed jails' filters inline; matched events are batched to the engine.
struct SourceSink {
    filters: Vec<(u16, Box<dyn Filter>)>,
    clock: Arc<dyn Clock>,
    scratch: Vec<Event>,
    batch: Vec<(u16, Event)>,
    tx: Sender<EngineMsg>,
    stats: Arc<Stats>,
    lines: u64,
    now: Timestamp,
    /// The input the last lines came from, and how many since published.
    input: String,
    input_lines: u64,
    /// The source's key in the store's positions (its state id); `None` for stdin.
    key: Option<Arc<str>>,
    /// Last position delivered per source, for sources restarted by a reload.
    delivered: Arc<Mutex<HashMap<String, Position>>>,
    /// Unreadable headers and ambiguous lines already added to the daemon's counters.
    reported_rejects: (u64, u64),
}

impl SourceSink {
    /// Adds the filters' new unreadable-header and ambiguous-line counts to the daemon's
    /// counters. Jails sharing a source see the same lines, so the source counts the largest
    /// of its filters' figures, not their sum.
    fn publish_rejects(&mut self) {
        let (mut headers, mut ambiguous) = (0u64, 0u64);
        for (_, f) in &self.filters {
            let st = f.stats();
            headers = headers.max(st.unreadable_header.iter().sum());
            ambiguous = ambiguous.max(st.ambiguous);
        }
        let (h0, a0) = self.reported_rejects;
        if headers > h0 {
            self.stats.header_rejects.fetch_add(headers - h0, Relaxed);
        }
        if ambiguous > a0 {
            self.stats
                .ambiguous_lines
                .fetch_add(ambiguous - a0, Relaxed);
        }
        self.reported_rejects = (headers.max(h0), ambiguous.max(a0));
    }

    /// Adds the lines of the current input to its status entry.
    fn publish_input(&mut self) {
        if self.input_lines > 0 {
            let now = self.clock.now();
            let mut m = self
                .stats
                .source_lines
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match m.get_mut(self.input.as_str()) {
                Some(e) => *e = (e.0 + self.input_lines, now),
                None => {
                    m.insert(self.input.clone(), (self.input_lines, now));
                }
            }
            self.input_lines = 0;
        }
    }

    fn flush(&mut self) {
        self.send(None);
    }

    fn send(&mut self, pos: Option<Position>) {
        self.publish_input();
        self.publish_rejects();
        self.stats.lines.fetch_add(self.lines, Relaxed);
        self.lines = 0;
        if !self.batch.is_empty() || pos.is_some() {
            let b = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            self.stats.events.fetch_add(b.len() as u64, Relaxed);
            let _ = self.tx.send(EngineMsg::Events(b, (self.key.clone(), pos)));
        }
    }
}

impl LineSink for SourceSink {
    fn line(&mut self, line: &[u8], meta: &LineMeta<'_>) {
        self.lines += 1;
        if meta.source != self.input {
            self.publish_input();
            self.input.clear();
            self.input.push_str(meta.source);
        }
        self.input_lines += 1;
        if self.lines & 0xfff == 0 {
            self.now = self.clock.now();
        }
        let ctx = LineCtx {
            now: self.now,
            source_time: meta.time,
            journal: meta.journal,
        };
        for (jail, f) in self.filters.iter_mut() {
            if f.process(line, &ctx, &mut self.scratch) == Outcome::Matched {
                for e in self.scratch.drain(..) {
                    self.batch.push((*jail, e));
                }
            }
            self.scratch.clear();
        }
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    fn idle(&mut self) {
        self.now = self.clock.now();
        self.flush();
    }

    /// The position covers every line delivered so far: it travels with the batch holding
    /// their last events, and the store writer stores it once they are committed.
    fn checkpoint(&mut self, pos: &Position) {
        if let Some(k) = &self.key {
            self.delivered
                .lock()
                .unwrap()
                .insert(k.to_string(), pos.clone());
        }
        self.send(Some(pos.clone()));
    }
}

struct SourceGroup {
    spec: SourceSpec,
    jails: Vec<usize>,
    key: String,
}

fn source_groups(cfg: &Config) -> Vec<SourceGroup> {
    let mut groups: Vec<SourceGroup> = Vec::new();
    for (i, j) in cfg.jails.iter().filter(|j| j.enabled).enumerate() {
        let (spec, key) = if j.stdin {
            (SourceSpec::Stdin, "stdin".to_string())
        } else if let Some(m) = &j.journal {
            (
                SourceSpec::Journald { matches: m.clone() },
                format!("journald {}", m.join(" ")),
            )
        } else {
            let patterns: Vec<String> = j
                .files
                .iter()
                .map(|f| cfg.resolve(f).to_string_lossy().into_owned())
                .collect();
            let key = format!("files {}", patterns.join(" "));
            (SourceSpec::Files { patterns }, key)
        };
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => g.jails.push(i),
            None => groups.push(SourceGroup {
                spec,
                jails: vec![i],
                key,
            }),
        }
    }
    groups
}

/// A stable, file-name-safe id for a source (its state sub-folder).
fn state_key(key: &str) -> String {
    // FNV-1a: stable across runs and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let kind: String = key.split(' ').next().unwrap_or("src").into();
    format!("{kind}-{h:016x}")
}

/// Builds the filters of every source group. A jail whose filter cannot be built is skipped
/// with an error in the log, `filter_errors` counted and the reason listed in
/// `Stats::jail_errors` (shown by `status`), so that one broken filter file does not take the
/// other jails down; `palisade config check` reports the same error and fails. Groups left
/// without a filter are dropped.
#[allow(clippy::type_complexity)]
fn build_group_filters(
    cfg: &Config,
    groups: Vec<SourceGroup>,
    enabled: &[&palisade_config::JailSection],
    tz: &jiff::tz::TimeZone,
    stats: &Stats,
) -> (Vec<SourceGroup>, Vec<Vec<(u16, Box<dyn Filter>)>>) {
    let mut errors = Vec::new();
    let mut kept = Vec::new();
    let mut filters = Vec::new();
    for g in groups {
        let mut v = Vec::new();
        for &i in &g.jails {
            match build_filter(cfg, enabled[i], tz) {
                Ok(f) => v.push((i as u16, f)),
                Err(e) => {
                    tracing::error!(error = %e, "jail skipped: its filter cannot be built");
                    stats.filter_errors.fetch_add(1, Relaxed);
                    errors.push(e.to_string());
                }
            }
        }
        if !v.is_empty() {
            kept.push(g);
            filters.push(v);
        }
    }
    *stats.jail_errors.lock().unwrap() = errors;
    (kept, filters)
}

/// Escalation memory of the bans in force: (target, bans since `since`, created), read with
/// one query. On a store error escalation starts afresh (logged), as before.
fn ban_memory(
    store: &mut dyn Store,
    active: &[Decision],
    now: Timestamp,
    since: Timestamp,
) -> Vec<(IpNet, u32, Timestamp)> {
    match store.active_ban_counts(now, since) {
        Ok(counts) => {
            let counts: HashMap<IpNet, u32> = counts.into_iter().collect();
            active
                .iter()
                .map(|d| {
                    let n = counts.get(&d.target).copied().unwrap_or(0);
                    (d.target, n, d.created)
                })
                .collect()
        }
        Err(e) => {
            tracing::error!(error = %e, "ban counts not restored: escalation starts afresh");
            Vec::new()
        }
    }
}

/// Start-up phase timings, logged at debug level (`RUST_LOG=debug`): where start-up time
/// goes with many bans to restore. Wall time, and (Linux) CPU time of this thread and of the
/// programs it waited for (`nft`), since on a loaded machine wall time mostly measures the
/// wait for a core.
struct Phases {
    start: std::time::Instant,
    last: std::time::Instant,
    cpu: (f64, f64),
}

impl Phases {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Phases {
            start: now,
            last: now,
            cpu: Self::cpu_ms(),
        }
    }

    /// CPU milliseconds of the calling thread and of waited-for children (0 if unknown).
    fn cpu_ms() -> (f64, f64) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return (0.0, 0.0);
        }
        let own = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |ns| ns / 1e6);
        // Fields 16 and 17 of /proc/self/stat: cutime, cstime in clock ticks (100 Hz).
        let children = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let t = |i: usize| f.get(i)?.parse::<f64>().ok();
                Some((t(13)? + t(14)?) * 10.0)
            })
            .unwrap_or(0.0);
        (own, children)
    }

    fn done(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        let cpu = Self::cpu_ms();
        tracing::debug!(
            phase,
            ms = format_args!("{:.1}", (now - self.last).as_secs_f64() * 1e3),
            cpu_ms = format_args!("{:.1}", cpu.0 - self.cpu.0),
            children_cpu_ms = format_args!("{:.0}", cpu.1 - self.cpu.1),
            since_start_ms = format_args!("{:.1}", (now - self.start).as_secs_f64() * 1e3),
            "start-up phase done"
        );
        self.last = now;
        self.cpu = cpu;
    }
}

/// A running daemon.
pub struct Daemon {
    /// Store housekeeping (retention, partitions ahead).
    maintainer: Option<crate::maintenance::Maintainer>,
    stats: Arc<Stats>,
    engine_tx: Sender<EngineMsg>,
    engine: Option<JoinHandle<()>>,
    responder: Option<JoinHandle<()>>,
    store: Option<JoinHandle<()>>,
    control: Option<JoinHandle<()>>,
    sources: Vec<JoinHandle<()>>,
    sources_stop: Arc<AtomicBool>,
    control_stop: Arc<AtomicBool>,
    socket: PathBuf,
    opts_from_start: bool,
    follow: bool,
    clock: Arc<dyn Clock>,
    source_errors: Arc<Mutex<Vec<String>>>,
    supervisor: Supervisor,
    supervise_rx: Receiver<Supervise>,
    /// Where each source (by state id) resumes: the stored, acknowledged position at start,
    /// then the last position delivered (sources restarted by a reload continue there).
    positions: Arc<Mutex<HashMap<String, Position>>>,
}

impl Daemon {
    /// Builds everything, reconciles responders from the store, then starts the threads.
    /// On error nothing is left running.
    pub fn start(cfg: Config, opts: DaemonOptions) -> Result<Daemon, DaemonError> {
        let mut phase = Phases::new();
        let tz = time_zone(&cfg)?;
        let engine_cfg = build_engine_config(&cfg);
        // Build filters first (pure), before any I/O. A jail whose filter cannot be built is
        // skipped (logged, counted, listed in status): the other jails keep running.
        let stats = Arc::new(Stats::default());
        let enabled: Vec<_> = cfg.jails.iter().filter(|j| j.enabled).collect();
        let (groups, filters) =
            build_group_filters(&cfg, source_groups(&cfg), &enabled, &tz, &stats);
        let mut responders = ResponderSet::build(&cfg)?;
        responders.register(&stats);
        {
            let mut h = stats.health();
            h.version = env!("CARGO_PKG_VERSION").to_owned();
            h.started = opts.clock.now();
            h.config = opts.config_name.clone();
            h.time_zone = tz.iana_name().unwrap_or("local").to_owned();
            h.store = StoreHealth {
                kind: if cfg.store.url.starts_with("postgres") {
                    "postgres".into()
                } else {
                    "sqlite".into()
                },
                ok: true,
                ..StoreHealth::default()
            };
        }
        phase.done("build filters and responders");
        let state_dir = PathBuf::from(&cfg.general.state_dir);
        std::fs::create_dir_all(&state_dir).map_err(|source| DaemonError::Io {
            what: "state folder",
            path: state_dir.clone(),
            source,
        })?;
        let store_url = crate::build::store_url(&cfg)?;
        let mut store = palisade_store::open(&store_url).map_err(BuildError::from)?;
        phase.done("store open and migrations");
        let now = opts.clock.now();
        store.expire_decisions_quietly(now)?;
        phase.done("expire decisions");
        let active = store.active_decisions(now)?;
        phase.done("read active decisions");
        responders.reconcile(&active, now)?;
        phase.done("reconcile responders");
        let socket = PathBuf::from(&cfg.general.socket);
        let listener = bind_socket(&socket)?;
        phase.done("bind control socket");

        // After the firewall holds the bans: on a busy machine, reading this alongside the
        // `nft` run only competed with it for a core.
        let memory_since = now.minus(Duration::from_secs(7 * 86400));
        let memory = ban_memory(&mut *store, &active, now, memory_since);
        let mut engine = Engine::new(engine_cfg);
        tracing::info!(
            active = active.len(),
            jails = enabled.len(),
            "restored bans in force"
        );
        engine.restore(active, memory);
        let mut initial = Vec::new();
        let reconcile_every = Some(cfg.general.reconcile_interval.0).filter(|d| !d.is_zero());
        warm_up(&mut *store, &mut engine, now, &mut initial);
        phase.done("restore engine state");
        let positions = match store.source_positions() {
            Ok(v) => v.into_iter().map(|(k, p)| (k, Position(p))).collect(),
            Err(e) => {
                tracing::error!(error = %e, "stored source positions unreadable; sources start afresh");
                HashMap::new()
            }
        };

        let (engine_tx, engine_rx) = bounded::<EngineMsg>(EVENT_QUEUE);
        let (resp_tx, resp_rx) = bounded::<RespMsg>(4096);
        let (store_tx, store_rx) = bounded::<StoreMsg>(STORE_QUEUE);
        let jail_names: Vec<String> = enabled.iter().map(|j| j.name.get_ref().clone()).collect();

        let responder = {
            let stats = stats.clone();
            let clock = opts.clock.clone();
            std::thread::Builder::new()
                .name("responder".into())
                .spawn(move || responder_loop(responders, resp_rx, clock, stats))
                .expect("spawn responder thread")
        };
        let store_h = {
            let stats = stats.clone();
            let clock = opts.clock.clone();
            std::thread::Builder::new()
                .name("store".into())
                .spawn(move || store_loop(store, store_rx, clock, stats))
                .expect("spawn store thread")
        };
        let engine_h = {
            let stats = stats.clone();
            let clock = opts.clock.clone();
            let observer = opts.observer.clone();
            std::thread::Builder::new()
                .name("engine".into())
                .spawn(move || {
                    engine_loop(
                        engine,
                        jail_names,
                        engine_rx,
                        resp_tx,
                        store_tx,
                        clock,
                        stats,
                        observer,
                        EngineStart {
                            initial,
                            reconcile_every,
                        },
                    )
                })
                .expect("spawn engine thread")
        };
        let control_stop = Arc::new(AtomicBool::new(false));
        let (supervise_tx, supervise_rx) = bounded::<Supervise>(16);
        let supervisor = Supervisor { tx: supervise_tx };
        let control = {
            let handle = ControlHandle {
                tx: engine_tx.clone(),
                supervisor: supervisor.clone(),
            };
            let stop = control_stop.clone();
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || control_loop(listener, handle, stop))
                .expect("spawn control thread")
        };
        // Partitions ahead and retention, at start and hourly, on its own connection.
        let maintainer = crate::maintenance::Maintainer::start(
            store_url,
            cfg.store.retention.0,
            crate::maintenance::MAINTENANCE_EVERY,
            opts.clock.clone(),
        );
        let mut d = Daemon {
            maintainer: Some(maintainer),
            stats,
            engine_tx,
            engine: Some(engine_h),
            responder: Some(responder),
            store: Some(store_h),
            control: Some(control),
            sources: Vec::new(),
            sources_stop: Arc::new(AtomicBool::new(false)),
            control_stop,
            socket,
            opts_from_start: opts.from_start,
            follow: opts.follow,
            clock: opts.clock,
            source_errors: Default::default(),
            supervisor,
            supervise_rx,
            positions: Arc::new(Mutex::new(positions)),
        };
        d.start_sources(&cfg, groups, filters);
        phase.done("start threads");
        Ok(d)
    }

    fn start_sources(
        &mut self,
        cfg: &Config,
        groups: Vec<SourceGroup>,
        filters: Vec<Vec<(u16, Box<dyn Filter>)>>,
    ) {
        self.sources_stop = Arc::new(AtomicBool::new(false));
        self.stats.health().sources.clear();
        for (i, (g, f)) in groups.into_iter().zip(filters).enumerate() {
            let health = Arc::new(SourceHealth::new());
            self.stats.health().sources.push(SourceEntry {
                key: g.key.clone(),
                files: matches!(g.spec, SourceSpec::Files { .. }),
                health: health.clone(),
                ended: None,
            });
            let key_id = state_key(&g.key);
            // The acknowledged position (stored with the events it covers); before the first
            // one, the state file an older version saved.
            let resume = self
                .positions
                .lock()
                .unwrap()
                .get(&key_id)
                .cloned()
                .or_else(|| {
                    Position::from_state_dir(
                        &g.spec,
                        &PathBuf::from(&cfg.general.state_dir).join(&key_id),
                    )
                });
            let opts = SourceOptions {
                from_start: self.opts_from_start,
                max_line: cfg.general.max_line,
                // Positions live in the store now (acknowledged), not in state files.
                state_dir: None,
                follow: self.follow,
                resume,
                ..SourceOptions::default()
            };
            let mut sink = SourceSink {
                filters: f,
                clock: self.clock.clone(),
                scratch: Vec::new(),
                batch: Vec::with_capacity(BATCH),
                tx: self.engine_tx.clone(),
                stats: self.stats.clone(),
                lines: 0,
                now: self.clock.now(),
                input: String::new(),
                input_lines: 0,
                key: (!matches!(g.spec, SourceSpec::Stdin)).then(|| Arc::from(key_id.as_str())),
                delivered: self.positions.clone(),
                reported_rejects: (0, 0),
            };
            let stop = self.sources_stop.clone();
            let stats = self.stats.clone();
            let errors = self.source_errors.clone();
            let key = g.key.clone();
            let h = std::thread::Builder::new()
                .name(format!(
                    "source {}",
                    g.key.chars().take(40).collect::<String>()
                ))
                .spawn(move || {
                    let r = palisade_source::run_with_health(
                        &g.spec,
                        &opts,
                        &mut sink,
                        &stop,
                        Some(&health),
                    );
                    let failed = match r {
                        Ok(s) => {
                            tracing::info!(source = %key, lines = s.lines, "source finished");
                            None
                        }
                        Err(e) => {
                            stats.source_errors.fetch_add(1, Relaxed);
                            tracing::error!(source = %key, error = %e, "source failed");
                            errors.lock().unwrap().push(format!("{key}: {e}"));
                            Some(e.to_string())
                        }
                    };
                    sink.flush();
                    // Sources stopped for a reload are replaced; others are reported ended.
                    if !stop.load(Relaxed) || failed.is_some() {
                        if let Some(s) = stats.health().sources.get_mut(i) {
                            if Arc::ptr_eq(&s.health, &health) {
                                s.ended = Some(failed);
                            }
                        }
                    }
                })
                .expect("spawn source thread");
            self.sources.push(h);
        }
    }

    fn stop_sources(&mut self) {
        self.sources_stop.store(true, Relaxed);
        for h in self.sources.drain(..) {
            let _ = h.join();
        }
    }

    /// Applies a new configuration without losing state (bans, counts, escalation memory,
    /// log positions). On error the old configuration keeps running.
    pub fn reload(&mut self, cfg: Config) -> Result<(), DaemonError> {
        let tz = time_zone(&cfg)?;
        let enabled: Vec<_> = cfg.jails.iter().filter(|j| j.enabled).collect();
        let (groups, filters) =
            build_group_filters(&cfg, source_groups(&cfg), &enabled, &tz, &self.stats);
        let responders = ResponderSet::build(&cfg)?;
        responders.register(&self.stats);
        self.stats.health().time_zone = tz.iana_name().unwrap_or("local").to_owned();
        let names = enabled.iter().map(|j| j.name.get_ref().clone()).collect();
        // Stop sources (they save their positions), swap engine settings, restart sources.
        self.stop_sources();
        let _ = self.engine_tx.send(EngineMsg::Reconfigure(
            Box::new(build_engine_config(&cfg)),
            Box::new(responders),
            names,
        ));
        self.start_sources(&cfg, groups, filters);
        if let Some(m) = &self.maintainer {
            m.set_retention(cfg.store.retention.0);
        }
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Reloads with a configuration loaded by the caller (`Err`: it did not load or
    /// validate): counts the outcome in `reloads` / `reload_failures`, logs it, and answers
    /// whoever asked. On any error the running configuration stays.
    pub fn reload_with(&mut self, loaded: Result<Config, String>, reply: ReloadReply) {
        let r = match loaded {
            Err(e) => {
                tracing::error!(error = %e, "reload refused; keeping the running configuration");
                Err(ControlError::Refused(e))
            }
            Ok(cfg) => self.reload(cfg).map_err(|e| {
                tracing::error!(error = %e, "reload failed; keeping the running configuration");
                ControlError::Refused(e.to_string())
            }),
        };
        let r = match r {
            Ok(()) => Ok(Reply::Reloaded(
                self.stats.reloads.fetch_add(1, Relaxed) + 1,
            )),
            Err(e) => {
                self.stats.reload_failures.fetch_add(1, Relaxed);
                Err(e)
            }
        };
        if let Some(tx) = reply {
            let _ = tx.send(r);
        }
    }

    /// Blocks until a reload or a stop is asked for (through [`Daemon::supervisor`] or a
    /// `reload` control request).
    pub fn wait(&self) -> Supervise {
        self.supervise_rx.recv().unwrap_or(Supervise::Stop)
    }

    /// A handle to ask [`Daemon::wait`] for a reload or a stop (signal handling).
    pub fn supervisor(&self) -> Supervisor {
        self.supervisor.clone()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A handle for in-process control requests (HTTP API).
    pub fn control(&self) -> ControlHandle {
        ControlHandle {
            tx: self.engine_tx.clone(),
            supervisor: self.supervisor.clone(),
        }
    }

    /// Waits until every source has finished (only happens with `follow = false` or stdin).
    pub fn wait_sources(&mut self) {
        for h in self.sources.drain(..) {
            let _ = h.join();
        }
    }

    /// Errors reported by sources so far.
    pub fn source_errors(&self) -> Vec<String> {
        self.source_errors.lock().unwrap().clone()
    }

    /// Stops everything in order: sources (positions saved), engine (queue drained),
    /// responders, store (last batch written), control socket.
    pub fn shutdown(mut self) {
        if let Some(m) = self.maintainer.take() {
            m.stop();
        }
        self.stop_sources();
        let _ = self.engine_tx.send(EngineMsg::Stop);
        if let Some(h) = self.engine.take() {
            let _ = h.join();
        }
        for h in [self.responder.take(), self.store.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
        self.control_stop.store(true, Relaxed);
        // Wake the accept loop.
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        if let Some(h) = self.control.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn bind_socket(path: &PathBuf) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| DaemonError::Io {
        what: "control socket",
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another palisade daemon is running",
        )));
    }
    let _ = std::fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(l)
}

/// Control connections handled at once; more get "busy" at once.
const CONTROL_CONNECTIONS: usize = 16;

/// Accepts control connections; each is served on its own short-lived thread (read and
/// write bounded by timeouts), so one idle or slow client never holds up the others.
fn control_loop(
    listener: std::os::unix::net::UnixListener,
    handle: ControlHandle,
    stop: Arc<AtomicBool>,
) {
    use std::io::Write;
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Relaxed) {
            break;
        }
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        if active.fetch_add(1, Relaxed) >= CONTROL_CONNECTIONS {
            active.fetch_sub(1, Relaxed);
            let busy = control::Response::Err(ControlError::Unavailable(
                "busy: too many control connections, try again".into(),
            ));
            let _ = s.write_all(
                format!("{}\n", serde_json::to_string(&busy).unwrap_or_default()).as_bytes(),
            );
            continue;
        }
        let (handle, done) = (handle.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                let resp: control::Response = control::read_request(&s)
                    .and_then(|req| handle.call(req))
                    .into();
                let mut line = serde_json::to_string(&resp).unwrap_or_default();
                line.push('\n');
                let _ = s.write_all(line.as_bytes());
                done.fetch_sub(1, Relaxed);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Relaxed);
        }
    }
}

/// Parses `1.2.3.4`, `2001:db8::/64`, `::ffff:1.2.3.4` into a network.
pub fn parse_target(s: &str) -> Result<IpNet, String> {
    Allowlist::parse_entry(s).ok_or_else(|| {
        format!("{s:?} is not an IP address or CIDR network (e.g. 192.0.2.7, 2001:db8::/64)")
    })
}

struct EngineCtx {
    resp_tx: Sender<RespMsg>,
    store_tx: Sender<StoreMsg>,
    stats: Arc<Stats>,
    observer: Option<Arc<dyn Observer>>,
}

impl EngineCtx {
    /// Waits (at most 10 s) until the responder thread has handled everything sent so far,
    /// so an operator's ban/unban is in force when the command returns.
    /// Returns the failures of the last apply of `targets` (retried in the background).
    fn sync_responders(&self, targets: Vec<IpNet>) -> Result<(), String> {
        let (tx, rx) = bounded(1);
        if self.resp_tx.send(RespMsg::Barrier(tx, targets)).is_ok() {
            if let Ok(errors) = rx.recv_timeout(Duration::from_secs(10)) {
                if !errors.is_empty() {
                    return Err(format!(
                        "decision recorded but not applied (retrying): {}",
                        errors.join("; ")
                    ));
                }
            }
        }
        Ok(())
    }

    fn dispatch(&self, actions: &mut Vec<Action>) {
        self.record_stale_bans(actions);
        let mut apply = Vec::new();
        for a in actions.drain(..) {
            match a {
                Action::Ban(d) => {
                    self.stats.decisions.fetch_add(1, Relaxed);
                    tracing::info!(target = %d.target, jail = %d.jail, origin = %d.origin,
                        simulated = d.simulated, expires = ?d.expires.map(|e| e.to_string()),
                        reason = %d.reason, "ban");
                    let _ = self.store_tx.send(StoreMsg::Decision(d.clone()));
                    if let Some(o) = &self.observer {
                        o.ban(&d);
                    }
                    self.stats.health().last_ban = Some(d.clone());
                    apply.push(d);
                }
                Action::Unban(d, why) => {
                    if !apply.is_empty() {
                        let _ = self
                            .resp_tx
                            .send(RespMsg::Apply(std::mem::take(&mut apply)));
                    }
                    tracing::info!(target = %d.target, jail = %d.jail, reason = ?why, "unban");
                    if let Some(o) = &self.observer {
                        o.unban(&d, why);
                    }
                    if why != UnbanReason::Expired {
                        let _ = self.store_tx.send(StoreMsg::Revoke(d.target));
                    }
                    let _ = self.resp_tx.send(RespMsg::Revoke(vec![d], why));
                }
            }
        }
        if !apply.is_empty() {
            let _ = self.resp_tx.send(RespMsg::Apply(apply));
        }
    }
}

/// Observes one event of jail `jail`: the one way history reaches the engine, whether read
/// from a log (live, or old lines at start with `--from-start`) or replayed from the store by
/// [`warm_up`] after a restart.
///
/// A ban decided from old events can be over before it starts: the engine expires it in the
/// same batch, so that [`EngineCtx::record_stale_bans`] (in every dispatch) records it without
/// enforcing and lifting it.
fn observe_event(
    engine: &mut Engine,
    jail: usize,
    ev: &Event,
    now: Timestamp,
    actions: &mut Vec<Action>,
) {
    engine.observe(jail, ev, actions);
    expire_stale_bans(engine, now, actions);
}

/// See [`observe_event`].
fn expire_stale_bans(engine: &mut Engine, now: Timestamp, actions: &mut Vec<Action>) {
    if actions.is_empty() {
        return;
    }
    let stale = |a: &Action| matches!(a, Action::Ban(d) if d.expires.is_some_and(|e| e <= now));
    if actions.iter().any(stale) {
        engine.expire(now, actions);
    }
}

impl EngineCtx {
    /// A ban and its expiry in one batch: the ban was over before it began. It is stored as
    /// history (escalation and reports count it) but never applied, announced or lifted.
    fn record_stale_bans(&self, actions: &mut Vec<Action>) {
        let expired: Vec<(IpNet, Timestamp)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Unban(d, UnbanReason::Expired) => Some((d.target, d.created)),
                _ => None,
            })
            .collect();
        if expired.is_empty() {
            return;
        }
        let stale: Vec<(IpNet, Timestamp)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Ban(d) if expired.contains(&(d.target, d.created)) => {
                    Some((d.target, d.created))
                }
                _ => None,
            })
            .collect();
        actions.retain(|a| match a {
            Action::Ban(d) if stale.contains(&(d.target, d.created)) => {
                tracing::debug!(target = %d.target, jail = %d.jail,
                    "ban from old events already over; recorded, not enforced");
                let _ = self.store_tx.send(StoreMsg::Decision(d.clone()));
                false
            }
            Action::Unban(d, UnbanReason::Expired) => !stale.contains(&(d.target, d.created)),
            _ => true,
        });
    }
}

/// What the engine thread starts with besides its channels.
struct EngineStart {
    /// Actions of the warm-up, dispatched first.
    initial: Vec<Action>,
    /// Interval of the periodic reconcile (`general.reconcile_interval`).
    reconcile_every: Option<Duration>,
}

fn engine_loop(
    mut engine: Engine,
    mut jail_names: Vec<String>,
    rx: Receiver<EngineMsg>,
    resp_tx: Sender<RespMsg>,
    store_tx: Sender<StoreMsg>,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
    observer: Option<Arc<dyn Observer>>,
    start: EngineStart,
) {
    let EngineStart {
        mut initial,
        reconcile_every,
    } = start;
    let mut last_reconcile = std::time::Instant::now();
    let ctx = EngineCtx {
        resp_tx,
        store_tx,
        stats,
        observer,
    };
    let tick = crossbeam_channel::tick(Duration::from_millis(500));
    // Bans the warm-up (failure counts restored from stored events) reached.
    ctx.dispatch(&mut initial);
    let mut actions = Vec::new();
    // Lines per second: sampled every few seconds on the tick.
    let mut sample = (std::time::Instant::now(), ctx.stats.lines.load(Relaxed));
    let mut last_event_delay: Option<f64> = None;
    let mut allow = AllowSources {
        configured: engine.config().allowlist.clone(),
        extra: Vec::new(),
    };
    loop {
        select! {
            recv(rx) -> msg => match msg {
                Ok(EngineMsg::Events(batch, pos)) => {
                    if let Some((_, ev)) = batch.last() {
                        let micros = clock.now().micros().saturating_sub(ev.time.micros());
                        last_event_delay = Some(micros as f64 / 1e6);
                    }
                    let mut per_jail: HashMap<u16, Vec<Event>> = HashMap::new();
                    for (jail, ev) in batch {
                        if let (Some(o), Some(name)) = (&ctx.observer, jail_names.get(jail as usize)) {
                            o.event(name, &ev);
                        }
                        observe_event(&mut engine, jail as usize, &ev, clock.now(), &mut actions);
                        ctx.dispatch(&mut actions);
                        per_jail.entry(jail).or_default().push(ev);
                    }
                    let evs: Vec<(String, Vec<Event>)> = per_jail
                        .into_iter()
                        .map(|(jail, evs)| {
                            (jail_names.get(jail as usize).cloned().unwrap_or_default(), evs)
                        })
                        .collect();
                    // Blocking: the bans are already on their way to the firewall; waiting
                    // here only slows reading when the store lags, and a position never
                    // passes a line whose events were dropped.
                    if !evs.is_empty() || pos.1.is_some() {
                        let _ = ctx.store_tx.send(StoreMsg::Batch(evs, pos));
                    }
                }
                Ok(EngineMsg::Control(req, reply)) => {
                    let lag = Lag { queued_batches: rx.len() as u64, last_event_delay_secs: last_event_delay };
                    let r = handle_control(&mut engine, &mut allow, &jail_names, req, clock.now(), &ctx, &mut actions, lag);
                    let _ = reply.send(r);
                }
                Ok(EngineMsg::Reconfigure(mut cfg, responders, names)) => {
                    allow.configured = cfg.allowlist.clone();
                    cfg.allowlist = allow.combined();
                    engine.reconfigure(*cfg, &mut actions);
                    jail_names = names;
                    let _ = ctx.resp_tx.send(RespMsg::Replace(responders));
                    let active: Vec<Decision> = engine.active().cloned().collect();
                    let _ = ctx.resp_tx.send(RespMsg::Reconcile(active));
                    ctx.dispatch(&mut actions);
                }
                Ok(EngineMsg::Stop) | Err(_) => break,
            },
            recv(tick) -> _ => {
                engine.expire(clock.now(), &mut actions);
                ctx.dispatch(&mut actions);
                let dt = sample.0.elapsed().as_secs_f64();
                if dt >= 2.0 {
                    let lines = ctx.stats.lines.load(Relaxed);
                    let rate = lines.saturating_sub(sample.1) as f64 / dt;
                    ctx.stats.rate.store(rate.to_bits(), Relaxed);
                    sample = (std::time::Instant::now(), lines);
                }
                if reconcile_every.is_some_and(|every| last_reconcile.elapsed() >= every) {
                    // Puts back what the firewall lost and what failed to apply for good.
                    last_reconcile = std::time::Instant::now();
                    let active: Vec<Decision> = engine.active().cloned().collect();
                    let _ = ctx.resp_tx.send(RespMsg::Reconcile(active));
                }
            }
        }
    }
    let _ = ctx.resp_tx.send(RespMsg::Stop);
    let _ = ctx.store_tx.send(StoreMsg::Stop);
}

/// The configured allowlist and the entries added at run time (the dashboard's, from the
/// store): the engine enforces their union, across reloads.
struct AllowSources {
    configured: Allowlist,
    extra: Vec<IpNet>,
}

impl AllowSources {
    fn combined(&self) -> Allowlist {
        Allowlist::new(self.configured.entries().iter().chain(&self.extra).copied())
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_control(
    engine: &mut Engine,
    allow: &mut AllowSources,
    jail_names: &[String],
    req: Request,
    now: Timestamp,
    ctx: &EngineCtx,
    actions: &mut Vec<Action>,
    lag: Lag,
) -> Result<Reply, ControlError> {
    match req {
        Request::Status => Ok(Reply::Status(Box::new(status_report(
            engine, jail_names, now, ctx, lag,
        )))),
        Request::Ban {
            target,
            duration_secs,
            reason,
        } => {
            if let Some(Err(e)) =
                duration_secs.map(|s| palisade_config::check_ban_duration(Duration::from_secs(s)))
            {
                return Err(ControlError::Refused(e));
            }
            let reason = if reason.is_empty() {
                "manual ban".to_string()
            } else {
                reason
            };
            let d = engine
                .manual_ban(
                    target.trunc(),
                    duration_secs.map(Duration::from_secs),
                    &reason,
                    now,
                    actions,
                )
                .map_err(ControlError::Refused)?;
            ctx.dispatch(actions);
            ctx.sync_responders(vec![d.target])
                .map_err(ControlError::Refused)?;
            Ok(Reply::Banned(d))
        }
        Request::Unban { target } => {
            let t = target.trunc();
            let n = engine.unban(&t, actions);
            ctx.dispatch(actions);
            let _ = ctx.sync_responders(Vec::new());
            // Also revoke stored decisions the engine no longer tracks (e.g. simulated).
            let _ = ctx.store_tx.send(StoreMsg::Revoke(t));
            Ok(Reply::Lifted(n as u64))
        }
        Request::Record { mut decision } => {
            bound_recorded(&mut decision).map_err(ControlError::Refused)?;
            decision.id = 0;
            decision.target = decision.target.trunc();
            decision.simulated |= engine.config().dry_run;
            engine
                .adopt(decision.clone(), actions)
                .map_err(ControlError::Refused)?;
            ctx.dispatch(actions);
            Ok(Reply::Recorded(decision))
        }
        Request::SetAllowlist { extra } => {
            allow.extra = extra.into_iter().map(|n| n.trunc()).collect();
            allow.extra.sort_unstable();
            allow.extra.dedup();
            engine.set_allowlist(allow.combined(), actions);
            ctx.dispatch(actions);
            Ok(Reply::AllowlistSet(engine.config().allowlist.len() as u64))
        }
        // Handled by the daemon's owner (ControlHandle sends it there); not the engine's.
        Request::Reload => Err(ControlError::Refused(
            "reload is handled by the daemon's supervisor".into(),
        )),
    }
}

fn status_report(
    engine: &Engine,
    jail_names: &[String],
    now: Timestamp,
    ctx: &EngineCtx,
    lag: Lag,
) -> StatusReport {
    let mut active: Vec<&Decision> = engine.active().filter(|d| d.active_at(now)).collect();
    active.sort_by_key(|d| std::cmp::Reverse(d.created));
    let jails = engine
        .jail_stats()
        .into_iter()
        .zip(&engine.config().jails)
        .map(|((name, s, tracked), p)| JailStatus {
            name: name.to_string(),
            failures: s.failures,
            detections: s.detections,
            tracked: tracked as u64,
            evicted: s.evicted,
            max_retry: p.max_retry,
            find_time: p.find_time.as_secs(),
            ban_time: p.ban_time.map(|d| d.as_secs()),
            dry_run: p.dry_run,
        })
        .collect();
    let es = engine.stats();
    let stats = &ctx.stats;
    let sources = stats.sources();
    let h = stats.health();
    StatusReport {
        version: h.version.clone(),
        started: h.started,
        uptime_secs: now.since(h.started).as_secs(),
        config: h.config.clone(),
        time_zone: h.time_zone.clone(),
        counters: stats.counters(),
        engine: EngineCounters {
            allowlisted: es.allowlisted,
            while_banned: es.while_banned,
            bans: es.bans,
        },
        jails,
        jail_names: jail_names.to_vec(),
        active_bans: active.len() as u64,
        bans: active.iter().take(1000).map(|d| (*d).clone()).collect(),
        last_ban: h.last_ban.clone(),
        lines_per_sec: f64::from_bits(stats.rate.load(Relaxed)),
        lag,
        sources,
        store: h.store.clone(),
        responders: h.responders.values().cloned().collect(),
    }
}

/// A failed apply waiting for its next attempt.
struct Retry {
    responder: usize,
    batch: Vec<Decision>,
    attempts: u32,
    due: std::time::Instant,
}

/// The responder thread's state besides the responders.
struct RespState {
    retries: Vec<Retry>,
    /// Targets whose last apply failed, with the error (for the control reply); bounded.
    failed: HashMap<IpNet, String>,
}

/// Attempts of a failed apply at most (the first included); then the periodic reconcile is
/// what applies it again.
const RETRY_MAX: u32 = 8;
/// Wait before the first retry; doubled each time up to [`RETRY_WAIT_MAX`].
const RETRY_WAIT: Duration = Duration::from_secs(1);
const RETRY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Failed targets remembered for control replies, at most.
const FAILED_MAX: usize = 65_536;

impl RespState {
    fn note(&mut self, set: &ResponderSet, failures: Vec<(usize, Vec<Decision>, String)>) {
        for (i, batch, e) in failures {
            for d in &batch {
                if self.failed.len() < FAILED_MAX {
                    self.failed
                        .insert(d.target, format!("{}: {e}", set.responders[i].name()));
                }
            }
            self.retries.push(Retry {
                responder: i,
                batch,
                attempts: 1,
                due: std::time::Instant::now() + RETRY_WAIT,
            });
        }
    }

    fn applied(&mut self, ds: &[Decision]) {
        if !self.failed.is_empty() {
            for d in ds {
                self.failed.remove(&d.target);
            }
        }
    }

    /// Drops pending retries of lifted targets.
    fn revoked(&mut self, ds: &[Decision]) {
        for r in &mut self.retries {
            r.batch.retain(|d| !ds.iter().any(|x| x.target == d.target));
        }
        self.retries.retain(|r| !r.batch.is_empty());
        for d in ds {
            self.failed.remove(&d.target);
        }
    }

    /// Runs the retries that are due.
    fn run_due(&mut self, set: &mut ResponderSet, now: Timestamp, stats: &Stats) {
        let t = std::time::Instant::now();
        let mut i = 0;
        while i < self.retries.len() {
            if self.retries[i].due > t {
                i += 1;
                continue;
            }
            let mut r = self.retries.swap_remove(i);
            r.batch.retain(|d| d.active_at(now));
            if r.batch.is_empty() || r.responder >= set.responders.len() {
                continue;
            }
            stats.responder_retries.fetch_add(1, Relaxed);
            match set.apply_one(r.responder, &r.batch, now, stats) {
                Ok(()) => {
                    tracing::info!(
                        responder = set.responders[r.responder].name(),
                        decisions = r.batch.len(),
                        attempts = r.attempts + 1,
                        "apply succeeded on retry"
                    );
                    let done = std::mem::take(&mut r.batch);
                    self.applied(&done);
                }
                Err(_) if r.attempts + 1 >= RETRY_MAX => {
                    stats.responder_given_up.fetch_add(1, Relaxed);
                    tracing::error!(
                        responder = set.responders[r.responder].name(),
                        decisions = r.batch.len(),
                        "apply given up after {RETRY_MAX} attempts; the periodic reconcile will try again"
                    );
                }
                Err(_) => {
                    r.attempts += 1;
                    let wait = RETRY_WAIT
                        .saturating_mul(1 << (r.attempts - 1).min(16))
                        .min(RETRY_WAIT_MAX);
                    r.due = t + wait;
                    self.retries.push(r);
                }
            }
        }
        let pending: usize = self.retries.iter().map(|r| r.batch.len()).sum();
        stats.responder_pending.store(pending as u64, Relaxed);
    }

    fn next_due(&self) -> Duration {
        let t = std::time::Instant::now();
        self.retries
            .iter()
            .map(|r| r.due.saturating_duration_since(t))
            .min()
            .unwrap_or(Duration::from_secs(3600))
    }
}

/// The responder thread: applies and revokes in order; a failed apply is retried with
/// backoff (at most [`RETRY_MAX`] attempts, waits from [`RETRY_WAIT`] doubling up to
/// [`RETRY_WAIT_MAX`]), counted per responder in [`Stats`], and reported to a control request
/// waiting on it.
fn responder_loop(
    mut set: ResponderSet,
    rx: Receiver<RespMsg>,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
) {
    let mut st = RespState {
        retries: Vec::new(),
        failed: HashMap::new(),
    };
    let mut pending: Option<RespMsg> = None;
    loop {
        let msg = match pending.take() {
            Some(m) => m,
            None => match rx.recv_timeout(st.next_due()) {
                Ok(m) => m,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    st.run_due(&mut set, clock.now(), &stats);
                    continue;
                }
                Err(_) => break,
            },
        };
        match msg {
            RespMsg::Apply(mut ds) => {
                // Coalesce queued applies into one batch (one firewall transaction).
                loop {
                    match rx.try_recv() {
                        Ok(RespMsg::Apply(more)) => ds.extend(more),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let failures = set.apply(&ds, clock.now(), &stats);
                st.applied(&ds);
                st.note(&set, failures);
            }
            other => {
                if !handle_other(&mut set, &mut st, other, &clock, &stats) {
                    break;
                }
            }
        }
        if !st.retries.is_empty() {
            st.run_due(&mut set, clock.now(), &stats);
        }
    }
}

/// Handles a non-apply message; false on Stop.
fn handle_other(
    set: &mut ResponderSet,
    st: &mut RespState,
    msg: RespMsg,
    clock: &Arc<dyn Clock>,
    stats: &Stats,
) -> bool {
    match msg {
        RespMsg::Apply(ds) => {
            let failures = set.apply(&ds, clock.now(), stats);
            st.applied(&ds);
            st.note(set, failures);
        }
        RespMsg::Revoke(ds, why) => {
            st.revoked(&ds);
            set.revoke(&ds, why, stats);
        }
        RespMsg::Reconcile(active) => {
            if let Err(e) = set.reconcile(&active, clock.now()) {
                match e {
                    DaemonError::Reconcile(name, e) => {
                        stats.responder_failed(&name, "reconcile", &e)
                    }
                    e => stats.responder_failed("?", "reconcile", &e.to_string()),
                }
            } else {
                // Everything in force is applied now.
                for r in &set.responders {
                    stats.responder_result(r.name(), Ok(()));
                }
                st.retries.clear();
                st.failed.clear();
                stats.responder_pending.store(0, Relaxed);
            }
        }
        RespMsg::Replace(new) => {
            *set = *new;
            st.retries.clear();
        }
        RespMsg::Barrier(done, targets) => {
            let errors = targets
                .iter()
                .filter_map(|t| st.failed.get(t).cloned())
                .collect();
            let _ = done.send(errors);
        }
        RespMsg::Stop => return false,
    }
    true
}

/// Retries a store write a few times (a locked SQLite file, a PostgreSQL reconnect).
fn with_retry<T>(
    mut f: impl FnMut() -> Result<T, palisade_store::StoreError>,
) -> Result<T, palisade_store::StoreError> {
    let mut wait = Duration::from_millis(50);
    for _ in 0..3 {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, "store write failed; retrying");
                std::thread::sleep(wait);
                wait *= 4;
            }
        }
    }
    f()
}

/// The store writer. Decisions are committed one by one as they come; event batches are
/// merged (up to [`STORE_COALESCE`]) and committed with the newest position of each source
/// they carry, in one transaction. Messages are handled in order, so when a position is
/// stored, every decision taken on the lines it covers is already committed: the position is
/// *acknowledged*. After a failure that lost a decision or a batch, positions stop moving for
/// the rest of the run (`positions_held`), so a restart reads those lines again.
fn store_loop(
    mut store: Box<dyn Store>,
    rx: Receiver<StoreMsg>,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
) {
    let err = |e: palisade_store::StoreError, what: &str| {
        stats.store_errors.fetch_add(1, Relaxed);
        tracing::error!(error = %e, "store {what} failed");
        stats.store_result(Err(format!("{what}: {e}")));
    };
    let ok = || stats.store_result(Ok(()));
    let hold = || {
        if !stats.positions_held.swap(true, Relaxed) {
            tracing::error!(
                "source positions no longer advance until restart: lines since will be read again"
            );
        }
    };
    let mut last_expire = clock.now();
    let mut pending: Option<StoreMsg> = None;
    // Events of each source not yet covered by a position it gave.
    let mut unacked: HashMap<Arc<str>, Vec<(String, Vec<Event>)>> = HashMap::new();
    loop {
        let msg = match pending.take() {
            Some(m) => Some(m),
            None => match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => Some(m),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(_) => break,
            },
        };
        match msg {
            Some(StoreMsg::Batch(evs, pos)) => {
                // Events to commit now, and the newest position of each source among them.
                let mut commit: Vec<(String, Vec<Event>)> = Vec::new();
                let mut positions: HashMap<Arc<str>, Position> = HashMap::new();
                let mut take = |evs: Vec<(String, Vec<Event>)>, pos: SourcePos| match pos {
                    (Some(k), Some(p)) => {
                        if let Some(mut held) = unacked.remove(&k) {
                            held.extend(evs);
                            commit.extend(held);
                        } else {
                            commit.extend(evs);
                        }
                        positions.insert(k, p);
                    }
                    (Some(k), None) => {
                        let held = unacked.entry(k).or_default();
                        held.extend(evs);
                        // Bounded: a source checkpoints after every round of reads, so this
                        // is only reached by a runaway; store them without a position then.
                        if held.iter().map(|(_, e)| e.len()).sum::<usize>() > UNACKED_MAX {
                            commit.append(held);
                        }
                    }
                    (None, _) => commit.extend(evs),
                };
                take(evs, pos);
                for _ in 1..STORE_COALESCE {
                    match rx.try_recv() {
                        Ok(StoreMsg::Batch(more, pos)) => take(more, pos),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let held = stats.positions_held.load(Relaxed);
                let pos: Vec<(&str, &str)> = if held {
                    Vec::new()
                } else {
                    positions
                        .iter()
                        .map(|(k, p)| (&**k, p.0.as_str()))
                        .collect()
                };
                let ev: Vec<(&str, &[Event])> = commit
                    .iter()
                    .map(|(j, e)| (j.as_str(), e.as_slice()))
                    .collect();
                if !ev.is_empty() || !pos.is_empty() {
                    match with_retry(|| store.record_batch(&ev, &pos)) {
                        Ok(()) => {
                            ok();
                            stats.positions_acked.fetch_add(pos.len() as u64, Relaxed);
                        }
                        Err(e) => {
                            let n: usize = commit.iter().map(|(_, e)| e.len()).sum();
                            stats.events_dropped.fetch_add(n as u64, Relaxed);
                            err(e, "events");
                            hold();
                        }
                    }
                }
            }
            Some(StoreMsg::Decision(d)) => match with_retry(|| store.insert_decision(&d)) {
                Ok(_) => ok(),
                Err(e) => {
                    err(e, "decision");
                    hold();
                }
            },
            Some(StoreMsg::Revoke(target)) => {
                let q = palisade_store::DecisionQuery {
                    target: Some(target),
                    active_at: Some(clock.now()),
                    limit: Some(10_000),
                    ..Default::default()
                };
                match store.decisions(&q) {
                    Ok(v) => {
                        for d in v {
                            let inside = d.decision.target == target
                                || target.contains(&d.decision.target)
                                || d.decision.target.contains(&target);
                            if inside {
                                if let Err(e) = store.revoke_decision(d.decision.id) {
                                    err(e, "revoke");
                                }
                            }
                        }
                    }
                    Err(e) => err(e, "revoke lookup"),
                }
            }
            Some(StoreMsg::Stop) => break,
            None => {}
        }
        let now = clock.now();
        if now.since(last_expire) >= Duration::from_secs(5) {
            last_expire = now;
            if let Err(e) = store.expire_decisions_quietly(now) {
                err(e, "expire");
            }
        }
    }
    let _ = store.expire_decisions_quietly(clock.now());
}

/// Restores the jails' failure counts from the events stored within the longest find time
/// (at most [`WARM_UP_MAX`], oldest first): the source positions are past those lines, so
/// they are not read again, and without this a crash would forget failures counted towards
/// a ban not yet taken. Bans the counts reach go to `out`; one already over by `now` is only
/// recorded ([`observe_event`]), like a ban from old log lines.
fn warm_up(store: &mut dyn Store, engine: &mut Engine, now: Timestamp, out: &mut Vec<Action>) {
    let Some(find_time) = engine.config().jails.iter().map(|j| j.find_time).max() else {
        return;
    };
    const PAGE: u32 = 10_000;
    let mut evs = Vec::new();
    let mut before_id = None;
    loop {
        let q = palisade_store::EventQuery {
            since: Some(now.minus(find_time)),
            before_id,
            limit: Some(PAGE),
            ..Default::default()
        };
        match store.events(&q) {
            Ok(page) => {
                let n = page.len();
                before_id = page.last().map(|e| e.id);
                evs.extend(page);
                if n < PAGE as usize || evs.len() >= WARM_UP_MAX {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "stored events unreadable: failure counts start afresh");
                return;
            }
        }
    }
    evs.reverse();
    // Events up to a ban of their address were consumed by that ban (its counter was reset):
    // replaying them would ban again once a short ban has ended.
    let since = now.minus(find_time);
    let mut banned: HashMap<IpNet, Timestamp> = HashMap::new();
    let q = palisade_store::DecisionQuery {
        limit: Some(WARM_UP_MAX as u32),
        ..Default::default()
    };
    match store.decisions(&q) {
        Ok(ds) => {
            for d in ds
                .into_iter()
                .map(|d| d.decision)
                .filter(|d| d.created >= since)
            {
                let t = banned.entry(d.target.trunc()).or_insert(d.created);
                *t = (*t).max(d.created);
            }
        }
        Err(e) => tracing::error!(error = %e, "stored decisions unreadable for the warm-up"),
    }
    let mut lens: Vec<u8> = banned.keys().map(IpNet::prefix_len).collect();
    lens.sort_unstable();
    lens.dedup();
    let consumed = |ip: std::net::IpAddr, time: Timestamp| {
        lens.iter().any(|&len| {
            IpNet::new(ip, len)
                .ok()
                .and_then(|n| banned.get(&n.trunc()))
                .is_some_and(|&created| time <= created)
        })
    };
    let mut replayed = 0usize;
    for se in &evs {
        if consumed(se.event.ip, se.event.time) {
            continue;
        }
        if let Some(j) = engine.jail_index(&se.jail) {
            observe_event(engine, j, &se.event, now, out);
            replayed += 1;
        }
    }
    tracing::info!(
        events = replayed,
        "failure counts restored from stored events"
    );
}

/// Bounds a recorded decision's length: a zero-length (or negative) ban is refused, one
/// longer than [`palisade_config::MAX_DURATION`] becomes permanent (fail2ban's
/// `bantime.increment` can hand over any length).
pub fn bound_recorded(d: &mut Decision) -> Result<(), String> {
    if let Some(e) = d.expires {
        if e <= d.created {
            return Err(format!(
                "{}: a ban must last at least 1 second (expires at or before its creation)",
                d.target
            ));
        }
        if e.since(d.created) > palisade_config::MAX_DURATION {
            d.expires = None;
        }
    }
    Ok(())
}

/// A manual decision for `target`.
pub fn manual_decision(
    target: IpNet,
    duration: Option<Duration>,
    reason: &str,
    now: Timestamp,
) -> Decision {
    Decision {
        id: 0,
        target,
        jail: "manual".into(),
        origin: Origin::Manual,
        reason: reason.to_string(),
        created: now,
        expires: duration.map(|d| now.plus(d)),
        simulated: false,
        level: 0,
    }
}
