//! Remote access-log analysis (issue 16 item 7): `palisade analyze --agents web1,web2`.
//!
//! ```text
//! CLI ──admin socket (0600, one request line)──▶ server ──`analyze` {id, query}──▶ agent
//!   ◀── progress / rows / done|error lines ────         ◀── `analyze_result` parts ──  (own thread, nice 10)
//! ```
//!
//! - The CLI talks to the running server over the server's **admin socket**
//!   ([`palisade_proto::fleet_analyze::admin_socket_path`], next to the control socket, mode
//!   0600 like it): one [`AdminRequest`] line, then [`AdminLine`]s as the agents answer.
//! - The server ([`Hub`]) sends an `analyze` message only to a connected session whose
//!   `hello` announced the [`CAPABILITY`]; an agent that is unknown, revoked, not connected
//!   or too old gets an `error` line at once. Parts are routed by request id AND agent name,
//!   so an agent cannot answer for another; rows beyond the query's limit are dropped; a
//!   per-agent timeout ends the wait.
//! - The agent ([`AgentAnalyze`]) reads only the logs its own configuration allows: the
//!   files of its jails whose filter is `nginx_access` or `apache_access` (globs expanded,
//!   with their numbered or dated rotations), or `[fleet] analyze_files` when set. A query's
//!   `files` may only narrow that set (compared after resolving links); a path outside it
//!   refuses the whole query, and nothing is read. One analysis at a time, on its own thread
//!   at nice 10, one classifying thread, stopped at the query's timeout; results go back in
//!   chunks of at most [`MAX_ROWS_PER_MSG`] rows. No shell anywhere.

use crate::server::{with_store, SharedStore};
use palisade_analyze::analyze::{Analysis, Analyzer, Levels, Options};
use palisade_config::Config;
use palisade_core::{Allowlist, Timestamp};
use palisade_proto::fleet::{AgentMsg, ServerMsg};
use palisade_proto::fleet_analyze::{
    AdminLine, AdminRequest, AnalyzeFile, AnalyzePart, AnalyzeProgress, AnalyzeQuery, AnalyzeRow,
    AnalyzeSummary, AnalyzeUntracked, CAPABILITY, MAX_FILES, MAX_ROWS_PER_MSG, MAX_TIMEOUT_SECS,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Built-in filters whose logs an agent analyzes by default.
const WEB_FILTERS: [&str; 2] = ["nginx_access", "apache_access"];

/// Most files an agent's allowed set holds (globs and rotations included).
const MAX_ALLOWED: usize = 1024;

/// Largest admin request line.
const MAX_ADMIN_REQUEST: u64 = 64 * 1024;

/// Most agents one request names.
const MAX_AGENTS: usize = 1000;

// ---------------------------------------------------------------------------------------
// Agent side.

/// What an agent may analyze, from its configuration.
#[derive(Clone, Debug)]
pub struct AgentAnalyze {
    cfg: Arc<Config>,
    /// Patterns (globs) of the allowed logs.
    patterns: Vec<String>,
}

impl AgentAnalyze {
    /// From the agent's configuration: `[fleet] analyze_files` when set, else the files of
    /// its enabled `nginx_access` / `apache_access` jails.
    pub fn from_config(cfg: &Config) -> AgentAnalyze {
        let explicit = cfg.fleet.as_ref().and_then(|f| f.analyze_files.clone());
        let patterns = explicit.unwrap_or_else(|| {
            cfg.jails
                .iter()
                .filter(|j| j.enabled)
                .filter(|j| {
                    j.filter
                        .as_ref()
                        .is_some_and(|f| WEB_FILTERS.contains(&f.get_ref().as_str()))
                })
                .flat_map(|j| j.files.iter().map(|f| cfg.resolve(f).display().to_string()))
                .collect()
        });
        AgentAnalyze {
            cfg: Arc::new(cfg.clone()),
            patterns,
        }
    }

    /// The allowed logs that exist now, each followed by nothing and preceded by its
    /// rotations (oldest first), so lines are read in time order.
    pub fn allowed(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in &self.patterns {
            let Ok(paths) = glob::glob(p) else { continue };
            for f in paths.flatten().filter(|f| f.is_file()) {
                for r in rotations(&f) {
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
                if !out.contains(&f) {
                    out.push(f);
                }
                if out.len() >= MAX_ALLOWED {
                    return out;
                }
            }
        }
        out
    }

    /// The files a query reads: every allowed one, or the ones it names, each of which must
    /// be allowed (compared after resolving links and `..`).
    pub fn select(&self, q: &AnalyzeQuery) -> Result<Vec<PathBuf>, String> {
        let allowed = self.allowed();
        if q.files.is_empty() {
            return Ok(allowed);
        }
        if q.files.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} files asked for"));
        }
        let canon: Vec<(PathBuf, &PathBuf)> = allowed
            .iter()
            .filter_map(|a| std::fs::canonicalize(a).ok().map(|c| (c, a)))
            .collect();
        let mut out = Vec::new();
        for f in &q.files {
            let shown: String = f.chars().take(200).collect();
            let hit = std::fs::canonicalize(f).ok().and_then(|c| {
                canon
                    .iter()
                    .find(|(a, _)| *a == c)
                    .map(|(_, a)| (*a).clone())
            });
            match hit {
                Some(p) => out.push(p),
                None => {
                    return Err(format!(
                        "{shown:?} is not one of the logs this agent allows for analysis ({})",
                        if self.patterns.is_empty() {
                            "none: no nginx_access/apache_access jail and no [fleet] analyze_files"
                                .to_string()
                        } else {
                            self.patterns.join(", ")
                        }
                    ))
                }
            }
        }
        Ok(out)
    }

    fn options(&self, q: &AnalyzeQuery) -> Result<Options, String> {
        let [yellow, red, critical] = q.levels;
        if !(yellow <= red && red <= critical) {
            return Err("levels must increase".into());
        }
        let mut nets: Vec<ipnet::IpNet> = self.cfg.allowlist.parsed.clone();
        nets.extend(
            palisade_analyze::analyze::default_allowlist()
                .entries()
                .iter()
                .copied(),
        );
        Ok(Options {
            since: q.since_us.map(Timestamp),
            until: q.until_us.map(Timestamp),
            threshold: q.threshold,
            levels: Levels {
                yellow,
                red,
                critical,
            },
            allowlist: Allowlist::new(nets),
            tz: self.cfg.time_zone()?,
            threads: 1,
            deadline: Some(
                std::time::Instant::now()
                    + Duration::from_secs(q.timeout_secs.clamp(1, MAX_TIMEOUT_SECS)),
            ),
            ..Default::default()
        })
    }
}

/// `access.log` → its rotations that exist: `access.log.N[.gz]` (highest N first) and
/// `access.log-SUFFIX[.gz]` (dated, sorted by name).
fn rotations(f: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (f.parent(), f.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut numbered: Vec<(u32, PathBuf)> = Vec::new();
    let mut dated: Vec<PathBuf> = Vec::new();
    for e in rd.flatten().take(10_000) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        let core = rest.strip_suffix(".gz").unwrap_or(rest);
        if let Some(n) = core.strip_prefix('.').and_then(|n| n.parse::<u32>().ok()) {
            numbered.push((n, e.path()));
        } else if let Some(d) = core.strip_prefix('-') {
            if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) {
                dated.push(e.path());
            }
        }
    }
    numbered.sort_by_key(|n| std::cmp::Reverse(n.0));
    dated.sort();
    dated
        .into_iter()
        .chain(numbered.into_iter().map(|(_, p)| p))
        .filter(|p| p.is_file())
        .collect()
}

/// The agent's side of the session: starts analyses and hands their parts to the session
/// loop ([`AgentRunner::recv`]).
pub struct AgentRunner {
    setup: Option<Arc<AgentAnalyze>>,
    busy: Arc<AtomicBool>,
    tx: mpsc::Sender<AgentMsg>,
    rx: mpsc::Receiver<AgentMsg>,
}

impl AgentRunner {
    /// `None`: this agent does not offer remote analysis.
    pub fn new(setup: Option<AgentAnalyze>) -> AgentRunner {
        let (tx, rx) = mpsc::channel(64);
        AgentRunner {
            setup: setup.map(Arc::new),
            busy: Arc::new(AtomicBool::new(false)),
            tx,
            rx,
        }
    }

    /// The capability to announce in `hello`, if any.
    pub fn capability(&self) -> Option<String> {
        self.setup.as_ref().map(|_| CAPABILITY.to_string())
    }

    /// Drops parts left over from a previous connection (their request is gone).
    pub fn forget_stale(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// The next part to send.
    pub async fn recv(&mut self) -> Option<AgentMsg> {
        self.rx.recv().await
    }

    /// Handles a server's `analyze`: refuses at once (an error part) or starts the
    /// analysis on its own low-priority thread.
    pub fn start(&self, id: u64, query: AnalyzeQuery) {
        let err = |e: String| {
            let _ = self.tx.try_send(AgentMsg::AnalyzeResult {
                id,
                part: AnalyzePart::Error { error: e },
            });
        };
        let Some(setup) = self.setup.clone() else {
            return err("remote analysis is off on this agent".into());
        };
        if self.busy.swap(true, Ordering::AcqRel) {
            return err("busy: another analysis is running on this agent".into());
        }
        let (busy, tx) = (self.busy.clone(), self.tx.clone());
        let spawned = std::thread::Builder::new()
            .name("fleet-analyze".into())
            .spawn(move || {
                // Low priority: this thread only (Linux nice values are per thread).
                if let Err(e) = rustix::process::setpriority_process(None, 10) {
                    tracing::debug!(error = %e, "fleet analyze: setpriority");
                }
                let started = std::time::Instant::now();
                let mut parts = run(&setup, &query, &tx, id);
                let last = parts.pop();
                let mut sent = true;
                for part in parts {
                    if tx
                        .blocking_send(AgentMsg::AnalyzeResult { id, part })
                        .is_err()
                    {
                        sent = false;
                        break;
                    }
                }
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "fleet: remote analysis done"
                );
                // Free before the last part goes out: whoever reads it may ask again at once.
                busy.store(false, Ordering::Release);
                if let Some(part) = last.filter(|_| sent) {
                    let _ = tx.blocking_send(AgentMsg::AnalyzeResult { id, part });
                }
            });
        if spawned.is_err() {
            self.busy.store(false, Ordering::Release);
            err("could not start the analysis thread".into());
        }
    }
}

/// Runs one analysis; progress goes out as it happens, the rows and the end are returned.
fn run(
    setup: &AgentAnalyze,
    q: &AnalyzeQuery,
    tx: &mpsc::Sender<AgentMsg>,
    id: u64,
) -> Vec<AnalyzePart> {
    let error = |e: String| vec![AnalyzePart::Error { error: e }];
    let files = match setup.select(q) {
        Ok(f) => f,
        Err(e) => return error(e),
    };
    if files.is_empty() {
        return error(
            "no log to analyze: no nginx_access/apache_access jail file exists and [fleet] analyze_files is not set".into(),
        );
    }
    let opts = match setup.options(q) {
        Ok(o) => o,
        Err(e) => return error(e),
    };
    let geo = match palisade_analyze::geo::for_config(Some(&setup.cfg), None) {
        Ok(g) => g,
        Err(e) => return error(format!("GeoIP: {e}")),
    };
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let total: u64 = sizes.iter().sum();
    let mut an = Analyzer::new(opts);
    let mut done = 0u64;
    let mut last = std::time::Instant::now();
    for (f, size) in files.iter().zip(&sizes) {
        let mut tick = |n: u64| {
            if last.elapsed() >= Duration::from_secs(1) {
                last = std::time::Instant::now();
                let _ = tx.try_send(AgentMsg::AnalyzeResult {
                    id,
                    part: AnalyzePart::Progress(AnalyzeProgress {
                        done: done + n,
                        total,
                    }),
                });
            }
        };
        if let Err(e) = an.feed_file(f, &mut tick) {
            return error(e.to_string());
        }
        done += size;
    }
    let result = an.finish(geo.as_ref());
    parts_of(&result, q.row_limit())
}

/// An analysis as parts: row chunks then the summary.
pub fn parts_of(a: &Analysis, limit: usize) -> Vec<AnalyzePart> {
    let listed: Vec<AnalyzeRow> = a
        .ips
        .iter()
        .filter(|r| r.suspicious > 0)
        .take(limit)
        .map(|r| AnalyzeRow {
            ip: r.ip,
            requests: r.requests,
            suspicious: r.suspicious,
            rules: r.rules.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            client_errors: r.client_errors,
            peak_per_minute: r.peak_per_minute,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            country: r.country.clone(),
            proposed: r.proposed,
            allowlisted: r.allowlisted,
        })
        .collect();
    let with_hits = a.ips.iter().filter(|r| r.suspicious > 0).count();
    let summary = AnalyzeSummary {
        files: a
            .files
            .iter()
            .take(MAX_FILES)
            .map(|f| AnalyzeFile {
                path: f.path.clone(),
                lines: f.lines,
                requests: f.requests,
                outside_window: f.outside_window,
                unparsed: f.unparsed,
                suspicious: f.suspicious,
                level: f.level.as_str().into(),
            })
            .collect(),
        lines: a.lines,
        requests: a.requests,
        suspicious: a.suspicious,
        level: a.level.as_str().into(),
        distinct_ips: a.distinct_ips,
        untracked: AnalyzeUntracked {
            requests: a.untracked.requests,
            strong_hits: a.untracked.strong_hits,
        },
        rule_totals: a
            .rule_totals
            .iter()
            .map(|(n, c)| (n.to_string(), *c))
            .collect(),
        rows_left_out: (with_hits - listed.len()) as u64,
        rows: listed.len() as u64,
        proposed: a
            .proposed()
            .take(palisade_proto::fleet_analyze::MAX_ROWS as usize)
            .map(|r| r.ip)
            .collect(),
        seconds: a.seconds,
    };
    let mut out: Vec<AnalyzePart> = listed
        .chunks(MAX_ROWS_PER_MSG)
        .map(|c| AnalyzePart::Rows { rows: c.to_vec() })
        .collect();
    out.push(AnalyzePart::Done(summary));
    out
}

// ---------------------------------------------------------------------------------------
// Server side.

type PartTx = mpsc::Sender<(String, AnalyzePart)>;

struct Session {
    token: u64,
    capable: bool,
    tx: mpsc::Sender<ServerMsg>,
}

/// The server's registry: sessions that can be asked, and the requests in flight.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<String, Session>>,
    /// Request id → (agent name, where its parts go, rows received).
    pending: Mutex<HashMap<u64, (String, PartTx, usize, usize)>>,
    next_id: AtomicU64,
}

impl Hub {
    /// A session opened for agent `name` (`capable`: its hello has [`CAPABILITY`]); the
    /// session sends what the receiver yields.
    pub fn register(&self, name: &str, token: u64, capable: bool) -> mpsc::Receiver<ServerMsg> {
        let (tx, rx) = mpsc::channel(16);
        self.sessions
            .lock()
            .unwrap()
            .insert(name.to_string(), Session { token, capable, tx });
        rx
    }

    /// The session `token` of `name` ended: its requests in flight fail.
    pub fn unregister(&self, name: &str, token: u64) {
        let mut s = self.sessions.lock().unwrap();
        if s.get(name).is_some_and(|x| x.token == token) {
            s.remove(name);
            drop(s);
            let mut p = self.pending.lock().unwrap();
            let gone: Vec<u64> = p
                .iter()
                .filter(|(_, v)| v.0 == name)
                .map(|(k, _)| *k)
                .collect();
            for id in gone {
                if let Some((n, tx, _, _)) = p.remove(&id) {
                    let _ = tx.try_send((
                        n,
                        AnalyzePart::Error {
                            error: "the agent disconnected during the analysis".into(),
                        },
                    ));
                }
            }
        }
    }

    /// A part from agent `name` for request `id`: forwarded when that request was sent to
    /// that agent, else dropped. Rows beyond the request's limit are dropped.
    pub async fn deliver(&self, name: &str, id: u64, part: AnalyzePart) {
        let tx = {
            let mut p = self.pending.lock().unwrap();
            let Some(entry) = p.get_mut(&id).filter(|e| e.0 == name) else {
                tracing::debug!(agent = %name, id, "fleet: analyze part for no request of this agent");
                return;
            };
            let tx = entry.1.clone();
            match &part {
                AnalyzePart::Rows { rows } => {
                    if entry.2 + rows.len() > entry.3 {
                        tracing::warn!(agent = %name, "fleet: agent sent more analyze rows than asked; dropped");
                        return;
                    }
                    entry.2 += rows.len();
                }
                AnalyzePart::Done(_) | AnalyzePart::Error { .. } => {
                    p.remove(&id);
                }
                AnalyzePart::Progress(_) => {}
            }
            tx
        };
        let _ = tx.send((name.to_string(), part)).await;
    }

    /// Sends `query` to agent `name`; its parts will go to `tx`. Returns the request id,
    /// or why the agent cannot be asked.
    async fn ask(&self, name: &str, query: &AnalyzeQuery, tx: PartTx) -> Result<u64, String> {
        let session = {
            let s = self.sessions.lock().unwrap();
            match s.get(name) {
                None => return Err("not connected".into()),
                Some(x) if !x.capable => {
                    return Err(
                        "connected, but its palisade version (or configuration) does not offer remote analysis".into(),
                    )
                }
                Some(x) => x.tx.clone(),
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.pending
            .lock()
            .unwrap()
            .insert(id, (name.to_string(), tx, 0, query.row_limit()));
        let msg = ServerMsg::Analyze {
            id,
            query: query.clone(),
        };
        if session.send(msg).await.is_err() {
            self.pending.lock().unwrap().remove(&id);
            return Err("not connected".into());
        }
        Ok(id)
    }

    fn cancel(&self, ids: &[u64]) {
        let mut p = self.pending.lock().unwrap();
        for id in ids {
            p.remove(id);
        }
    }
}

/// What the [`crate::server::FleetServer`] keeps to serve the admin socket.
pub(crate) struct AdminHook {
    rt: tokio::runtime::Handle,
    hub: Arc<Hub>,
    store: SharedStore,
    path: Option<PathBuf>,
}

impl AdminHook {
    pub(crate) fn new(rt: tokio::runtime::Handle, hub: Arc<Hub>, store: SharedStore) -> Self {
        AdminHook {
            rt,
            hub,
            store,
            path: None,
        }
    }

    /// Binds `path` and serves it on the server's runtime.
    pub(crate) fn serve(&mut self, path: &Path) -> Result<(), crate::FleetError> {
        let l = bind_admin(path).map_err(|e| {
            crate::FleetError::Io(format!("fleet admin socket {}: {e}", path.display()))
        })?;
        let (hub, store) = (self.hub.clone(), self.store.clone());
        self.rt
            .spawn(async move { serve_admin(l, hub, store).await });
        self.path = Some(path.to_path_buf());
        tracing::info!(socket = %path.display(), "fleet: remote analysis admin socket");
        Ok(())
    }

    /// Removes the socket file.
    pub(crate) fn close(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds the admin socket (mode 0600) at `path`; fails when another server answers there.
pub fn bind_admin(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{}: another fleet server is running", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    // Created with no permission for others from the start, then 0600.
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves the admin socket: one request per connection.
pub(crate) async fn serve_admin(
    listener: std::os::unix::net::UnixListener,
    hub: Arc<Hub>,
    store: SharedStore,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "fleet admin socket");
            return;
        }
    };
    let active = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        if active.load(Ordering::Relaxed) >= 8 {
            let mut conn = conn;
            let _ = write_line(
                &mut conn,
                &AdminLine::Error {
                    host: String::new(),
                    error: "busy: too many remote analyses at once".into(),
                },
            )
            .await;
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (hub, store, active) = (hub.clone(), store.clone(), active.clone());
        tokio::spawn(async move {
            if let Err(e) = admin_conn(conn, &hub, &store).await {
                tracing::debug!(error = %e, "fleet admin connection ended");
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn write_line(w: &mut tokio::net::UnixStream, l: &AdminLine) -> std::io::Result<()> {
    let mut s = serde_json::to_string(l).map_err(std::io::Error::other)?;
    s.push('\n');
    w.write_all(s.as_bytes()).await
}

async fn admin_conn(
    conn: tokio::net::UnixStream,
    hub: &Hub,
    store: &SharedStore,
) -> Result<(), String> {
    let (r, mut w) = conn.into_split();
    let mut line = String::new();
    let mut br = tokio::io::BufReader::new(r.take(MAX_ADMIN_REQUEST));
    tokio::time::timeout(Duration::from_secs(10), br.read_line(&mut line))
        .await
        .map_err(|_| "no request".to_string())?
        .map_err(|e| e.to_string())?;
    let refuse = |e: String| AdminLine::Error {
        host: String::new(),
        error: e,
    };
    let send = |l: AdminLine| {
        let mut s = serde_json::to_string(&l).unwrap_or_default();
        s.push('\n');
        s
    };
    let (agents, mut query) = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(AdminRequest::Analyze { agents, query }) => (agents, query),
        Err(e) => {
            let _ = w
                .write_all(send(refuse(format!("bad request: {e}"))).as_bytes())
                .await;
            return Err("bad request".into());
        }
    };
    if agents.is_empty()
        || agents.len() > MAX_AGENTS
        || query.files.len() > MAX_FILES
        || agents.iter().any(|a| !palisade_config::valid_agent_name(a))
    {
        let _ = w
            .write_all(
                send(refuse(format!(
                    "name 1 to {MAX_AGENTS} agents (letters, digits, '.', '_', '-') and at most {MAX_FILES} files"
                )))
                .as_bytes(),
            )
            .await;
        return Err("bad request".into());
    }
    query.timeout_secs = query.timeout_secs.clamp(1, MAX_TIMEOUT_SECS);
    let known = with_store(store, |s| s.agents()).map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::channel::<(String, AnalyzePart)>(256);
    let mut waiting: Vec<String> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for name in agents.iter().filter(|a| seen.insert((*a).clone())) {
        let enrolled = known.iter().filter(|a| &a.name == name);
        let usable = enrolled.clone().any(|a| !a.revoked);
        let why = if usable {
            match hub.ask(name, &query, tx.clone()).await {
                Ok(id) => {
                    ids.push(id);
                    waiting.push(name.clone());
                    continue;
                }
                Err(e) => e,
            }
        } else if enrolled.count() > 0 {
            "revoked".to_string()
        } else {
            "unknown agent (not enrolled on this server)".to_string()
        };
        out.push_str(&send(AdminLine::Error {
            host: name.clone(),
            error: why,
        }));
    }
    drop(tx);
    if !out.is_empty() {
        w.write_all(out.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(query.timeout_secs + 5);
    let res = async {
        while !waiting.is_empty() {
            let Ok(got) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break;
            };
            let Some((host, part)) = got else { break };
            let line = match part {
                AnalyzePart::Progress(p) => AdminLine::Progress {
                    host,
                    done: p.done,
                    total: p.total,
                },
                AnalyzePart::Rows { rows } => AdminLine::Rows { host, rows },
                AnalyzePart::Done(summary) => {
                    waiting.retain(|h| h != &host);
                    AdminLine::Done { host, summary }
                }
                AnalyzePart::Error { error } => {
                    waiting.retain(|h| h != &host);
                    AdminLine::Error {
                        host,
                        error: error.chars().take(1000).collect(),
                    }
                }
            };
            w.write_all(send(line).as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut late = String::new();
        for host in waiting.drain(..) {
            late.push_str(&send(AdminLine::Error {
                host,
                error: format!("no answer within {} s", query.timeout_secs),
            }));
        }
        w.write_all(late.as_bytes())
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    hub.cancel(&ids);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with(dir: &Path, fleet_extra: &str, jail: &str) -> Config {
        let text = format!(
            "[general]\nstate_dir = \"{d}/state\"\nsocket = \"{d}/p.sock\"\n[store]\nurl = \"sqlite:{d}/p.db\"\n[fleet]\nrole = \"agent\"\nserver = \"wss://127.0.0.1:1\"\nname = \"a\"\n{fleet_extra}\n{jail}",
            d = dir.display()
        );
        let p = dir.join("p.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p, &["nginx_access", "sshd"]).unwrap()
    }

    fn query(files: &[&Path]) -> AnalyzeQuery {
        AnalyzeQuery {
            since_us: None,
            until_us: None,
            threshold: 1,
            levels: [1, 2, 3],
            top: 0,
            files: files.iter().map(|f| f.display().to_string()).collect(),
            timeout_secs: 10,
        }
    }

    #[test]
    fn allowed_set_is_the_web_jails_files_with_rotations_oldest_first() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for f in [
            "access.log",
            "access.log.1",
            "access.log.2.gz",
            "access.log-20251201",
            "access.log.bak",
            "auth.log",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let jails = format!(
            "[[jail]]\nname = \"web\"\nfilter = \"nginx_access\"\nfiles = [\"{d}/access.log\"]\n[[jail]]\nname = \"ssh\"\nfilter = \"sshd\"\nfiles = [\"{d}/auth.log\"]\n",
            d = d.display()
        );
        let a = AgentAnalyze::from_config(&cfg_with(d, "", &jails));
        let names: Vec<String> = a
            .allowed()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "access.log-20251201",
                "access.log.2.gz",
                "access.log.1",
                "access.log"
            ]
        );
        // Narrowing: an allowed file (however spelled) is fine; another one refuses all.
        // (A path through a directory that does not exist resolves to nothing.)
        assert!(a.select(&query(&[&d.join("sub/../access.log.1")])).is_err());
        std::fs::create_dir(d.join("sub")).unwrap();
        let ok = a.select(&query(&[&d.join("sub/../access.log.1")])).unwrap();
        assert_eq!(ok, [d.join("access.log.1")]);
        std::os::unix::fs::symlink(d.join("auth.log"), d.join("link.log")).unwrap();
        for bad in [
            d.join("auth.log"),
            d.join("link.log"),
            d.join("access.log.bak"),
        ] {
            let e = a
                .select(&query(&[&d.join("access.log"), &bad]))
                .unwrap_err();
            assert!(e.contains("not one of the logs"), "{e}");
        }
        // `[fleet] analyze_files` replaces the jails' files.
        let a = AgentAnalyze::from_config(&cfg_with(
            d,
            &format!("analyze_files = [\"{}/auth.log\"]", d.display()),
            &jails,
        ));
        assert_eq!(a.allowed(), [d.join("auth.log")]);
    }

    fn part(n: usize) -> AnalyzePart {
        AnalyzePart::Rows {
            rows: (0..n)
                .map(|i| AnalyzeRow {
                    ip: std::net::IpAddr::from([192, 0, 2, i as u8]),
                    requests: 1,
                    suspicious: 1,
                    rules: Vec::new(),
                    client_errors: 0,
                    peak_per_minute: 1,
                    first_seen: None,
                    last_seen: None,
                    country: None,
                    proposed: false,
                    allowlisted: false,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn hub_routes_parts_by_id_and_agent_and_bounds_rows() {
        let hub = Hub::default();
        let mut a_rx = hub.register("a", 1, true);
        let _b_rx = hub.register("b", 2, true);
        let _old = hub.register("old", 3, false);
        let (tx, mut rx) = mpsc::channel(16);
        let mut q = query(&[]);
        q.top = 2;
        assert!(hub
            .ask("old", &q, tx.clone())
            .await
            .unwrap_err()
            .contains("does not offer"));
        assert_eq!(
            hub.ask("nobody", &q, tx.clone()).await.unwrap_err(),
            "not connected"
        );
        let id = hub.ask("a", &q, tx.clone()).await.unwrap();
        assert!(matches!(a_rx.recv().await, Some(ServerMsg::Analyze { id: i, .. }) if i == id));
        // Agent b cannot answer for a's request.
        hub.deliver("b", id, part(1)).await;
        // a's rows beyond the limit are dropped.
        hub.deliver("a", id, part(2)).await;
        hub.deliver("a", id, part(1)).await;
        hub.unregister("a", 99); // another session's token: no effect
        hub.unregister("a", 1);
        drop(tx);
        let mut got = Vec::new();
        while let Some(p) = rx.recv().await {
            got.push(p);
        }
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], (h, AnalyzePart::Rows { rows }) if h == "a" && rows.len() == 2));
        assert!(
            matches!(&got[1], (h, AnalyzePart::Error { error }) if h == "a" && error.contains("disconnected"))
        );
    }
}
