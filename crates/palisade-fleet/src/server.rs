//! The fleet server: one TLS WebSocket listener (`[fleet] listen`).
//!
//! Per connection: TLS handshake (bounded by a timeout), then the WebSocket upgrade, whose
//! `Authorization` header is checked BEFORE upgrading (401 for an unknown, revoked or wrong
//! key): `Enroll <secret>` + `X-Palisade-Agent: <name>` enrolls (one `enrolled` message,
//! then close); `Agent <id>.<key>` opens the agent's session: `hello` → `welcome` (the stored
//! high-water mark, credit), then events are stored with the mark in one transaction and
//! acknowledged, fleet ban log entries are pushed as they are appended, pings measure the
//! clock offset, checksums are compared with the agent's expected ban set (a mismatch gets a
//! snapshot).
//!
//! One task polls the store every 500 ms: new ban log entries (appended by this process,
//! or by another one such as a CLI) are broadcast to the sessions, and revoked agents'
//! sessions are cut. An append by this process wakes it at once.

use crate::ident::sha256_hex;
use crate::{tls, FleetError, CREDIT, PING_EVERY};
use futures_util::{SinkExt, StreamExt};
use palisade_core::{Event, Timestamp};
use palisade_proto::fleet::{
    decode_agent, encode, AgentMsg, BanAction, BanEntry, ServerMsg, MAX_BANS, PROTOCOL_VERSION,
    V_CHECKSUM,
};
use palisade_store::fleet::{AgentUpdate, EnrollRefused, FleetLogEntry, FleetStore};
use sha2::Digest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Notify};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Server settings (from `[fleet]` and `[general]`).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Listen address.
    pub listen: SocketAddr,
    /// `[general] state_dir` (certificate).
    pub state_dir: PathBuf,
    /// Store URL.
    pub store_url: String,
    /// Push agents' local bans to the others.
    pub share_bans: bool,
    /// Connections in their handshake at once beyond which new ones get HTTP 503 +
    /// `Retry-After` (`[fleet] max_handshakes`; 0 = no limit).
    pub max_handshakes: usize,
    /// Store connections for ingest (PostgreSQL; SQLite always uses one).
    pub ingest_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: PathBuf::new(),
            store_url: String::new(),
            share_bans: true,
            max_handshakes: crate::overload::DEFAULT_MAX_HANDSHAKES,
            ingest_connections: crate::ingest::INGEST_CONNECTIONS,
        }
    }
}

/// Something that looks at every event the server stores (the correlator): gets the agent
/// name, the jail and the event with its time corrected by the agent's clock offset.
/// Returns fleet bans to append.
pub trait EventSink: Send {
    /// One stored event.
    fn observe(&mut self, host: &str, jail: &str, event: &Event) -> Vec<FleetLogEntry>;
    /// A fleet ban log entry (the bans in force at start, then every append, its own
    /// included): see [`crate::cluster::track`].
    fn log_entry(&mut self, _entry: &FleetLogEntry) {}
    /// Forgets everything (a server taking correlation over starts afresh).
    fn reset(&mut self) {}
    /// How far back in event time the sink looks (the longest fleet-jail `find_time`): the
    /// warm-up of a server taking correlation over.
    fn horizon(&self) -> Duration {
        Duration::ZERO
    }
}

pub(crate) type SharedStore = Arc<Mutex<Box<dyn FleetStore>>>;

/// Runs `f` on the store from async code (the store is synchronous).
pub(crate) fn with_store<T>(
    store: &SharedStore,
    f: impl FnOnce(&mut dyn FleetStore) -> Result<T, palisade_store::StoreError>,
) -> Result<T, palisade_store::StoreError> {
    tokio::task::block_in_place(|| {
        let mut g = store.lock().unwrap_or_else(|e| e.into_inner());
        f(g.as_mut())
    })
}

struct Shared {
    store: SharedStore,
    share_bans: bool,
    /// New ban log entries.
    bans: broadcast::Sender<Arc<Vec<FleetLogEntry>>>,
    /// Wakes the poller after an append.
    wake: Notify,
    /// Live sessions: agent id → its cut-off signal.
    sessions: Mutex<HashMap<String, (u64, watch::Sender<bool>)>>,
    sink: Option<Mutex<Box<dyn EventSink>>>,
    /// Remote analysis: sessions that can be asked, requests in flight.
    analyze: Arc<crate::remote_analyze::Hub>,
    /// Forwarded raw lines (`forward` capability), when set up.
    forward: Option<crate::forward_ingest::ForwardIngest>,
    /// Agents' live state, written in batches (crate::liveness).
    live: Arc<crate::liveness::Liveness>,
    /// Where batches are stored (crate::ingest).
    ingest: crate::ingest::Ingest,
    /// Handshakes in flight; "come back later" (crate::overload).
    admission: Arc<crate::overload::Admission>,
}

/// A running fleet server.
pub struct FleetServer {
    /// Remote analysis: the admin socket once served.
    analyze: crate::remote_analyze::AdminHook,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
    fingerprint: String,
    /// On a shared store (PostgreSQL): the ban log listener and the correlator election.
    _cluster: Option<crate::cluster::Cluster>,
}

impl FleetServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// The certificate fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    /// Serves `palisade analyze --agents` on the admin socket `path` (mode 0600).
    pub fn serve_admin(&mut self, path: &std::path::Path) -> Result<(), FleetError> {
        self.analyze.serve(path)
    }
    /// Stops the listener and every session.
    pub fn shutdown(mut self) {
        self.analyze.close();
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the server in its own thread (its own tokio runtime). Binds before returning, so
/// an address in use is reported at start-up.
pub fn spawn(
    opts: ServerOptions,
    sink: Option<Box<dyn EventSink>>,
) -> Result<FleetServer, FleetError> {
    spawn_with(opts, sink, None)
}

/// [`spawn`], also taking forwarders' raw lines with the filters and detection of `forward`.
pub fn spawn_with(
    opts: ServerOptions,
    sink: Option<Box<dyn EventSink>>,
    forward: Option<crate::forward_ingest::ForwardSetup>,
) -> Result<FleetServer, FleetError> {
    let mut store = palisade_store::fleet::open(&opts.store_url)?;
    let cert = crate::cluster::server_cert(&opts.state_dir, store.as_mut())?;
    let tls_cfg = tls::server_config(&cert)?;
    let clustered = store.is_shared();
    let mut sink = sink;
    // On a shared store other servers' agents are connected: their rows are left alone
    // ("connected" also needs a recent last_seen, so a dead server's agents show
    // disconnected anyway).
    if !clustered {
        store.disconnect_all()?;
        if let Some(s) = sink.as_mut() {
            crate::cluster::note_bans_in_force(store.as_mut(), s.as_mut(), crate::now())?;
        }
    }
    // On a shared store the correlator runs in the cluster's thread (whoever holds the lock).
    let cluster_sink = if clustered { sink.take() } else { None };
    let head = store.log_head()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fleet-server")
        .enable_all()
        .build()
        .map_err(|e| FleetError::Io(format!("starting the fleet runtime: {e}")))?;
    let std_listener = std::net::TcpListener::bind(opts.listen)
        .map_err(|e| FleetError::Net(format!("[fleet] listen {}: {e}", opts.listen)))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| FleetError::Net(e.to_string()))?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| FleetError::Net(e.to_string()))?;
    let (bans, _) = broadcast::channel(1024);
    let store: SharedStore = Arc::new(Mutex::new(store));
    let ingest =
        crate::ingest::Ingest::new(&opts.store_url, store.clone(), opts.ingest_connections)?;
    let shared = Arc::new(Shared {
        live: crate::liveness::Liveness::new(),
        ingest,
        admission: crate::overload::Admission::new(opts.max_handshakes),
        store,
        share_bans: opts.share_bans,
        bans,
        wake: Notify::new(),
        sessions: Mutex::new(HashMap::new()),
        sink: sink.map(Mutex::new),
        analyze: Arc::default(),
        forward: forward.map(crate::forward_ingest::ForwardIngest::new),
    });
    let cluster = if clustered {
        let s = shared.clone();
        Some(crate::cluster::start(
            &opts.store_url,
            Arc::new(move || s.wake.notify_one()),
            cluster_sink,
        )?)
    } else {
        None
    };
    let stop = Arc::new(Notify::new());
    let stop2 = stop.clone();
    let analyze = crate::remote_analyze::AdminHook::new(
        rt.handle().clone(),
        shared.analyze.clone(),
        shared.store.clone(),
    );
    let thread =
        std::thread::Builder::new()
            .name("fleet-server".into())
            .spawn(move || {
                rt.block_on(async move {
                let listener = match TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "fleet listener");
                        return;
                    }
                };
                tokio::spawn(poller(shared.clone(), head));
                tokio::spawn(crate::liveness::flusher(shared.store.clone(), shared.live.clone()));
                let acceptor = tokio_rustls::TlsAcceptor::from(tls_cfg);
                loop {
                    tokio::select! {
                        _ = stop2.notified() => break,
                        r = listener.accept() => {
                            let Ok((tcp, peer)) = r else { continue };
                            let _ = tcp.set_nodelay(true);
                            let acceptor = acceptor.clone();
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                if let Err(e) = connection(shared, acceptor, tcp).await {
                                    tracing::debug!(%peer, error = %e, "fleet connection ended");
                                }
                            });
                        }
                    }
                }
                // Cut every session.
                for (_, (_, tx)) in shared.sessions.lock().unwrap().drain() {
                    let _ = tx.send(true);
                }
            });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| FleetError::Io(e.to_string()))?;
    tracing::info!(%addr, fingerprint = %cert.fingerprint, "fleet server listening");
    Ok(FleetServer {
        analyze,
        stop,
        thread: Some(thread),
        addr,
        fingerprint: cert.fingerprint,
        _cluster: cluster,
    })
}

/// How often the server reads the ban log head (entries appended by another process, such as
/// `palisade fleet block`, are pushed within this).
const LOG_POLL: Duration = Duration::from_millis(500);

/// Broadcasts new log entries and cuts revoked agents, every [`LOG_POLL`] or when woken.
async fn poller(shared: Arc<Shared>, mut sent: i64) {
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(LOG_POLL) => {}
        }
        loop {
            match with_store(&shared.store, |s| s.log_since(sent, MAX_BANS as u32)) {
                Ok(v) if !v.is_empty() => {
                    sent = v.last().map_or(sent, |e| e.seq);
                    if let Some(sink) = &shared.sink {
                        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                        v.iter().for_each(|e| s.log_entry(e));
                    }
                    let _ = shared.bans.send(Arc::new(v));
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "fleet: reading the ban log");
                    break;
                }
            }
        }
        let live: Vec<String> = shared.sessions.lock().unwrap().keys().cloned().collect();
        if live.is_empty() {
            continue;
        }
        match with_store(&shared.store, |s| s.revoked_agent_ids()) {
            Ok(revoked) => {
                for id in revoked.iter().filter(|id| live.contains(id)) {
                    if let Some((_, tx)) = shared.sessions.lock().unwrap().remove(id) {
                        tracing::info!(agent = %id, "fleet: agent revoked; connection cut");
                        let _ = tx.send(true);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "fleet: reading agents"),
        }
    }
}

/// Who the upgrade request authenticated.
enum Auth {
    Enrolled { agent_id: String, key: String },
    Agent { id: String, name: String },
}

fn refuse(code: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_string()));
    *r.status_mut() = code;
    r
}

/// Checks the upgrade request's credentials (blocking store access; runs inside the
/// handshake, before the upgrade).
// The error type is tungstenite's handshake callback's (an HTTP response).
#[allow(clippy::result_large_err)]
fn authenticate(shared: &Shared, req: &Request) -> Result<Auth, ErrorResponse> {
    if let Some(after) = shared.admission.must_wait(shared.ingest.saturated()) {
        return Err(crate::overload::busy_response(after));
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let auth = header("authorization").unwrap_or("");
    let unauthorized = || refuse(StatusCode::UNAUTHORIZED, "unknown or revoked agent");
    if let Some(secret) = auth.strip_prefix("Enroll ") {
        let name = header("x-palisade-agent").unwrap_or("");
        if !palisade_config::valid_agent_name(name) {
            return Err(refuse(StatusCode::BAD_REQUEST, "bad agent name"));
        }
        let force = header("x-palisade-force") == Some("1");
        let agent_id = crate::ident::b64(&crate::ident::random_bytes(12));
        let key = crate::ident::b64(&crate::ident::random_bytes(32));
        let r = with_store(&shared.store, |s| {
            s.enroll(
                &sha256_hex(secret.trim().as_bytes()),
                name,
                &agent_id,
                &sha256_hex(key.as_bytes()),
                crate::now(),
                force,
            )
        });
        return match r {
            Ok(Ok(())) => {
                tracing::info!(agent = %name, id = %agent_id, "fleet: agent enrolled");
                Ok(Auth::Enrolled { agent_id, key })
            }
            Ok(Err(EnrollRefused::BadToken)) => Err(refuse(
                StatusCode::UNAUTHORIZED,
                "the enrollment token is unknown, used up or expired",
            )),
            Ok(Err(e @ EnrollRefused::NameTaken(_))) => {
                Err(refuse(StatusCode::CONFLICT, &e.to_string()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "fleet: enrollment");
                Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "store unavailable"))
            }
        };
    }
    let Some(cred) = auth.strip_prefix("Agent ") else {
        return Err(unauthorized());
    };
    let Some((id, key)) = cred.trim().split_once('.') else {
        return Err(unauthorized());
    };
    if id.len() > 64 || key.len() > 128 {
        return Err(unauthorized());
    }
    match with_store(&shared.store, |s| s.agent(id)) {
        Ok(Some(a)) if !a.revoked && a.key_hash == sha256_hex(key.as_bytes()) => Ok(Auth::Agent {
            id: a.id,
            name: a.name,
        }),
        Ok(_) => Err(unauthorized()),
        Err(e) => {
            tracing::warn!(error = %e, "fleet: authentication");
            Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "store unavailable"))
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
) -> Result<(), String> {
    let handshake = shared.admission.enter();
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS: {e}"))?;
    let mut who = None;
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        who = Some(authenticate(&shared, req)?);
        Ok(resp)
    };
    let ws = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::accept_hdr_async_with_config(tls, cb, Some(crate::ws_config())),
    )
    .await
    .map_err(|_| "WebSocket upgrade timed out".to_string())?
    .map_err(|e| format!("upgrade: {e}"))?;
    drop(handshake);
    match who {
        Some(Auth::Enrolled { agent_id, key }) => {
            let mut ws = ws;
            let msg = encode(PROTOCOL_VERSION, &ServerMsg::Enrolled { agent_id, key });
            ws.send(Message::text(msg))
                .await
                .map_err(|e| e.to_string())?;
            let _ = ws.close(None).await;
            Ok(())
        }
        Some(Auth::Agent { id, name }) => session(shared, ws, id, name).await,
        None => Err("no credentials".into()),
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

async fn close(ws: &mut Ws, why: &str) {
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: why.chars().take(120).collect::<String>().into(),
        })))
        .await;
}

fn to_wire(e: &FleetLogEntry) -> BanEntry {
    BanEntry {
        seq: e.seq as u64,
        action: if e.action == "unban" {
            BanAction::Unban
        } else {
            BanAction::Ban
        },
        target: e.target,
        jail: e.jail.clone(),
        reason: e.reason.clone(),
        expires_us: e.expires.map(|t| t.0),
    }
}

/// Whether the log entry goes to the agent `name` (its scope, and not its own local ban).
fn for_agent(e: &FleetLogEntry, name: &str) -> bool {
    e.applies_to(name) && e.origin.as_deref() != Some(name)
}

/// The fleet ban set an agent should hold now, having applied the log up to `upto`.
fn expected_set(shared: &Shared, name: &str, upto: i64) -> Result<Vec<FleetLogEntry>, String> {
    with_store(&shared.store, |s| {
        s.active_bans_for(crate::now(), name, upto)
    })
    .map(|v| v.into_iter().filter(|e| for_agent(e, name)).collect())
    .map_err(|e| e.to_string())
}

async fn send_snapshot(shared: &Shared, ws: &mut Ws, v: u16, name: &str) -> Result<u64, String> {
    let head = with_store(&shared.store, |s| s.log_head()).map_err(|e| e.to_string())?;
    let set = expected_set(shared, name, head)?;
    let bans: Vec<BanEntry> = set.iter().map(to_wire).collect();
    let mut parts = bans.chunks(MAX_BANS).peekable();
    if parts.peek().is_none() {
        let m = ServerMsg::Snapshot {
            cursor: head as u64,
            bans: Vec::new(),
            more: false,
        };
        ws.send(Message::text(encode(v, &m)))
            .await
            .map_err(|e| e.to_string())?;
    }
    while let Some(p) = parts.next() {
        let m = ServerMsg::Snapshot {
            cursor: head as u64,
            bans: p.to_vec(),
            more: parts.peek().is_some(),
        };
        ws.send(Message::text(encode(v, &m)))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(head as u64)
}

/// A batch being stored by a blocking task: what it stored, and the batch (for the sink).
type PendingIngest = tokio::task::JoinHandle<
    Result<
        (
            palisade_store::fleet::Ingested,
            Vec<palisade_store::fleet::ShippedEvent>,
        ),
        String,
    >,
>;

/// How far behind a cursor may be before the agent gets a snapshot instead of the entries.
const SNAPSHOT_AFTER: u64 = 10_000;

async fn session(shared: Arc<Shared>, mut ws: Ws, id: String, name: String) -> Result<(), String> {
    // hello
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "no hello".to_string())?;
    let text = match first {
        Some(Ok(Message::Text(t))) => t,
        _ => return Err("expected a hello".into()),
    };
    let (v, hello) = match decode_agent(text.as_str()) {
        Ok((v, AgentMsg::Hello(h))) => (v, h),
        Ok(_) => {
            close(&mut ws, "the first message must be hello").await;
            return Err("first message not hello".into());
        }
        Err(e) => {
            close(&mut ws, &e.to_string()).await;
            return Err(e.to_string());
        }
    };
    let v = v.min(hello.protocol_version.max(1)).min(PROTOCOL_VERSION);
    let epoch = hello.epoch;
    let token = crate::ident::random_u63();
    // Askable for remote analysis before `fleet agents` shows it connected.
    let capable = hello
        .capabilities
        .iter()
        .any(|c| c == palisade_proto::fleet_analyze::CAPABILITY);
    let mut analyze_rx = shared.analyze.register(&name, token, capable);
    let mark = with_store(&shared.store, |s| {
        s.agent_update(
            &id,
            &AgentUpdate {
                connected: Some(true),
                last_seen: Some(crate::now()),
                version: Some(hello.software_version.chars().take(64).collect()),
                protocol: Some(v),
                ban_cursor: Some(hello.ban_cursor),
                ..Default::default()
            },
        )?;
        s.high_water(&id, epoch)
    })
    .map_err(|e| e.to_string())?;
    let (cut_tx, mut cut_rx) = watch::channel(false);
    if let Some((_, old)) = shared
        .sessions
        .lock()
        .unwrap()
        .insert(id.clone(), (token, cut_tx))
    {
        // A newer connection of the same agent replaces the old one.
        let _ = old.send(true);
    }
    shared.live.start(&id, token, hello.ban_cursor);
    let mut bans_rx = shared.bans.subscribe();
    tracing::info!(agent = %name, protocol = v, acked = mark, "fleet: agent connected");
    let welcome = ServerMsg::Welcome {
        protocol_version: v,
        server_time_us: crate::now().0,
        acked_seq: mark,
        credit: CREDIT,
        capabilities: if shared.forward.is_some() && v >= V_CHECKSUM {
            vec![palisade_proto::fleet::CAP_FORWARD.to_string()]
        } else {
            Vec::new()
        },
    };
    let res = async {
        ws.send(Message::text(encode(v, &welcome)))
            .await
            .map_err(|e| e.to_string())?;
        // Catch up the ban log from the agent's cursor.
        let head = with_store(&shared.store, |s| s.log_head()).map_err(|e| e.to_string())? as u64;
        let mut cursor = hello.ban_cursor;
        if cursor == 0 || cursor > head || head - cursor > SNAPSHOT_AFTER {
            if cursor != 0 {
                tracing::info!(agent = %name, cursor, head, "fleet: the agent's ban cursor is not in the log's reach; sending a snapshot");
            }
            cursor = send_snapshot(&shared, &mut ws, v, &name).await?;
        } else {
            loop {
                let v_entries = with_store(&shared.store, |s| {
                    s.log_since(cursor as i64, MAX_BANS as u32)
                })
                .map_err(|e| e.to_string())?;
                let Some(last) = v_entries.last() else { break };
                cursor = last.seq as u64;
                let entries: Vec<BanEntry> = v_entries
                    .iter()
                    .filter(|e| for_agent(e, &name))
                    .map(to_wire)
                    .collect();
                if !entries.is_empty() {
                    ws.send(Message::text(encode(v, &ServerMsg::Bans { entries })))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut pings: HashMap<u64, i64> = HashMap::new();
        let mut offset_us: i64 = 0;
        let mut last_rx = std::time::Instant::now();
        // Local bans/unbans an agent may report: LOCAL_BANS_PER_WINDOW per window; beyond,
        // they are dropped (and logged once per window), so one agent cannot flood the log.
        let mut window = (std::time::Instant::now(), 0u32, false);
        let mut fwd = crate::forward_ingest::ForwardSession::default();
        // The batch being stored, off this task: bans are still pushed while it waits for
        // its store connection (a session that stored inline could not push anything during
        // a saturated ingest queue's seconds). The next message is read only once the batch
        // is stored and acknowledged, so an agent's batches stay in order.
        let mut pending: Option<PendingIngest> = None;
        loop {
            tokio::select! {
                r = async { pending.as_mut().expect("guarded by the precondition").await }, if pending.is_some() => {
                    pending = None;
                    let (r, batch) = r.map_err(|e| format!("storing a batch: {e}"))??;
                    if r.stored > 0 {
                        feed_sink(&shared, &name, &batch, r.stored, offset_us);
                    }
                    ws.send(Message::text(encode(v, &ServerMsg::Ack { epoch, seq: r.mark, credit: CREDIT })))
                        .await.map_err(|e| e.to_string())?;
                    // Silence counts from when this session listens again.
                    last_rx = std::time::Instant::now();
                }
                _ = cut_rx.changed() => {
                    close(&mut ws, "revoked or replaced").await;
                    return Ok(());
                }
                Some(m) = analyze_rx.recv() => {
                    ws.send(Message::text(encode(v, &m))).await.map_err(|e| e.to_string())?;
                }
                _ = ping.tick() => {
                    if pending.is_none() && last_rx.elapsed() > PING_EVERY * 3 {
                        return Err("the agent went silent".into());
                    }
                    let nonce = crate::ident::random_u63();
                    let t = crate::now().0;
                    if pings.len() > 16 { pings.clear(); }
                    pings.insert(nonce, t);
                    ws.send(Message::text(encode(v, &ServerMsg::Ping { nonce, server_time_us: t })))
                        .await.map_err(|e| e.to_string())?;
                }
                b = bans_rx.recv() => {
                    let batch = match b {
                        Ok(b) => b,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::info!(agent = %name, missed = n, "fleet: the session fell behind the ban broadcast; sending a snapshot");
                            cursor = send_snapshot(&shared, &mut ws, v, &name).await?;
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    let entries: Vec<BanEntry> = batch
                        .iter()
                        .filter(|e| e.seq as u64 > cursor && for_agent(e, &name))
                        .map(to_wire)
                        .collect();
                    if let Some(last) = batch.last() {
                        cursor = cursor.max(last.seq as u64);
                    }
                    if !entries.is_empty() {
                        ws.send(Message::text(encode(v, &ServerMsg::Bans { entries })))
                            .await.map_err(|e| e.to_string())?;
                    }
                }
                m = ws.next(), if pending.is_none() => {
                    last_rx = std::time::Instant::now();
                    shared.live.heard(&id);
                    let text = match m {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | None => return Ok(()),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(_)) => {
                            close(&mut ws, "binary frames are not part of the protocol").await;
                            return Err("binary frame".into());
                        }
                        Some(Err(e)) => return Err(e.to_string()),
                    };
                    let msg = match decode_agent(text.as_str()) {
                        Ok((mv, m)) if mv == v => m,
                        Ok((mv, _)) => {
                            close(&mut ws, &format!("this connection speaks version {v}, not {mv}")).await;
                            return Err("version changed".into());
                        }
                        Err(e) => {
                            close(&mut ws, &e.to_string()).await;
                            return Err(e.to_string());
                        }
                    };
                    match msg {
                        AgentMsg::Hello(_) => {
                            close(&mut ws, "hello twice").await;
                            return Err("hello twice".into());
                        }
                        AgentMsg::Events { epoch: e, first_seq: _, last_seq, events } => {
                            if e != epoch {
                                close(&mut ws, "batch of another epoch").await;
                                return Err("epoch".into());
                            }
                            let batch: Vec<(u64, String, Event)> =
                                events.into_iter().map(|w| (w.seq, bounded(&w.jail, 64), to_event(w))).collect();
                            let (sh, aid) = (shared.clone(), id.clone());
                            pending = Some(tokio::task::spawn_blocking(move || {
                                let (r, batch) = sh.ingest.ingest(&aid, epoch, last_seq, batch);
                                r.map(|r| (r, batch)).map_err(|e| e.to_string())
                            }));
                        }
                        AgentMsg::Gap { epoch: e, from_seq, to_seq, reason } => {
                            if e != epoch { continue; }
                            tracing::warn!(agent = %name, from_seq, to_seq, reason = %bounded(&reason, 64), "fleet: agent dropped events (spool cap)");
                            with_store(&shared.store, |s| s.gap(&id, epoch, from_seq, to_seq))
                                .map_err(|e| e.to_string())?;
                        }
                        AgentMsg::LocalBan { target, jail, reason, created_us, expires_us } => {
                            if !shared.share_bans || !within_rate(&mut window, &name) { continue; }
                            let entry = FleetLogEntry {
                                seq: 0,
                                action: "ban".into(),
                                target: target.trunc(),
                                jail: bounded(&jail, 64),
                                reason: bounded(&format!("{name}: {reason}"), 256),
                                created: Timestamp(created_us),
                                expires: expires_us.map(Timestamp),
                                origin: Some(name.clone()),
                                scope: None,
                            };
                            append(&shared, &entry).map_err(|e| e.to_string())?;
                        }
                        AgentMsg::LocalUnban { target } => {
                            if !shared.share_bans || !within_rate(&mut window, &name) { continue; }
                            let entry = FleetLogEntry {
                                seq: 0,
                                action: "unban".into(),
                                target: target.trunc(),
                                jail: String::new(),
                                reason: format!("{name}: lifted"),
                                created: crate::now(),
                                expires: None,
                                origin: Some(name.clone()),
                                scope: None,
                            };
                            append(&shared, &entry).map_err(|e| e.to_string())?;
                        }
                        AgentMsg::Checksum { cursor: c, count, sum } => {
                            if v < V_CHECKSUM { continue; }
                            // As of the cursor it reports: entries still on their way to it
                            // (appended after) are not held against it.
                            let set = expected_set(&shared, &name, i64::try_from(c).unwrap_or(i64::MAX))?;
                            let text = palisade_proto::fleet::ban_set_text(set.iter().map(|e| &e.target));
                            let want = crate::ident::sha256_hex(text.as_bytes());
                            shared.live.ban_cursor(&id, c);
                            if want != sum {
                                tracing::info!(agent = %name, agent_count = count, expected = set.len(), "fleet: ban set checksum mismatch; sending a snapshot");
                                cursor = send_snapshot(&shared, &mut ws, v, &name).await?;
                            }
                        }
                        AgentMsg::AnalyzeResult { id: rid, part } => {
                            if capable { shared.analyze.deliver(&name, rid, part).await; }
                        }
                        AgentMsg::Pong { nonce, agent_time_us, head_seq } => {
                            let recv = crate::now().0;
                            if let Some(sent) = pings.remove(&nonce) {
                                offset_us = agent_time_us - (sent + recv) / 2;
                                shared.live.pong(&id, offset_us / 1000, head_seq);
                            }
                        }
                        m @ (AgentMsg::Forward { .. } | AgentMsg::Lines { .. }) => {
                            let r = forwarded(&shared, &mut fwd, &id, &name, offset_us, m);
                            match r {
                                Ok(Some(ack)) => ws.send(Message::text(encode(v, &ack))).await.map_err(|e| e.to_string())?,
                                Ok(None) => {}
                                Err(why) => {
                                    close(&mut ws, &why).await;
                                    return Err(why);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    .await;
    shared.analyze.unregister(&name, token);
    let owned = {
        let mut sessions = shared.sessions.lock().unwrap();
        let mine = sessions.get(&id).is_some_and(|(t, _)| *t == token);
        if mine {
            sessions.remove(&id);
        }
        mine
    };
    let mut last = shared.live.end(&id, token).unwrap_or_default();
    last.connected = owned.then_some(false);
    last.last_seen = Some(crate::now());
    let _ = with_store(&shared.store, |s| s.agent_update(&id, &last));
    tracing::info!(agent = %name, "fleet: agent disconnected");
    res
}

/// A forwarder's `forward` or `lines` (see [`crate::forward_ingest`]): the answer to send,
/// or why the connection ends.
fn forwarded(
    shared: &Shared,
    sess: &mut crate::forward_ingest::ForwardSession,
    id: &str,
    name: &str,
    offset_us: i64,
    m: AgentMsg,
) -> Result<Option<ServerMsg>, String> {
    let Some(f) = &shared.forward else {
        return Err("this server takes no forwarded lines".into());
    };
    match m {
        AgentMsg::Forward { epoch, jails } => f.declare(sess, epoch, jails).map(|()| None),
        AgentMsg::Lines {
            jail,
            file,
            epoch,
            first_seq,
            last_seq,
            lines,
        } => {
            let batch = crate::forward_ingest::Batch {
                jail,
                file,
                epoch,
                first_seq,
                last_seq,
                lines,
            };
            let out = tokio::task::block_in_place(|| {
                f.lines(&shared.store, sess, id, name, shared.share_bans, batch)
            })?;
            if !out.fresh.is_empty() {
                feed_sink(shared, name, &out.fresh, out.fresh.len() as u64, offset_us);
            }
            for e in &out.bans {
                append(shared, e).map_err(|e| e.to_string())?;
            }
            Ok(Some(out.ack))
        }
        _ => Ok(None),
    }
}

/// Local bans and unbans one agent may report per [`LOCAL_BAN_WINDOW`].
pub const LOCAL_BANS_PER_WINDOW: u32 = 1000;
/// The window of [`LOCAL_BANS_PER_WINDOW`].
pub const LOCAL_BAN_WINDOW: Duration = Duration::from_secs(10);

fn within_rate(w: &mut (std::time::Instant, u32, bool), name: &str) -> bool {
    if w.0.elapsed() >= LOCAL_BAN_WINDOW {
        *w = (std::time::Instant::now(), 0, false);
    }
    w.1 += 1;
    if w.1 <= LOCAL_BANS_PER_WINDOW {
        return true;
    }
    if !w.2 {
        w.2 = true;
        tracing::warn!(agent = %name, "fleet: agent over {LOCAL_BANS_PER_WINDOW} local bans per {}s; the rest of this window is not shared", LOCAL_BAN_WINDOW.as_secs());
    }
    false
}

fn bounded(s: &str, n: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(n).collect()
}

fn to_event(w: palisade_proto::fleet::WireEvent) -> Event {
    Event {
        time: Timestamp(w.time_us),
        ip: palisade_core::canonical_ip(w.ip),
        filter: Arc::from(bounded(&w.filter, 64)),
        rule: Arc::from(bounded(&w.rule, 64)),
        failure: w.failure,
        user: w.user.map(|u| bounded(&u, 128).into_boxed_str()),
        fields: Vec::new(),
        evidence: Event::evidence_of(w.evidence.as_bytes()),
    }
}

/// Hands freshly stored events (the last `stored` of the batch are the new ones... all with
/// seq above the old mark) to the correlator, time corrected by the agent's clock offset.
fn feed_sink(
    shared: &Shared,
    host: &str,
    batch: &[(u64, String, Event)],
    stored: u64,
    offset_us: i64,
) {
    let Some(sink) = &shared.sink else { return };
    let fresh = &batch[batch.len().saturating_sub(stored as usize)..];
    let mut out = Vec::new();
    {
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        for (_, jail, e) in fresh {
            let mut e = e.clone();
            e.time = Timestamp(e.time.0 - offset_us);
            out.extend(s.observe(host, jail, &e));
        }
    }
    if out.is_empty() {
        return;
    }
    let out = with_store(&shared.store, |s| Ok(drop_allowlisted(s, out))).unwrap_or_default();
    for entry in out {
        if let Err(e) = append(shared, &entry) {
            tracing::warn!(error = %e, "fleet: appending a correlated ban");
        }
    }
}

/// Drops the correlated bans whose target overlaps the runtime allowlist (entries added over
/// the API or the dashboard, kept in the store; the configuration's `[allowlist]` is checked
/// by [`CorrelatorSink`] itself). Read only when there is a detection, so ingest does not pay
/// for it. When the list cannot be read nothing is banned (a wrong ban is worse than a late
/// one: the next event of the attack detects it again).
pub(crate) fn drop_allowlisted(
    store: &mut dyn FleetStore,
    out: Vec<FleetLogEntry>,
) -> Vec<FleetLogEntry> {
    if out.is_empty() {
        return out;
    }
    let nets = match store.allowlist_nets() {
        Ok(n) => palisade_core::Allowlist::new(n),
        Err(e) => {
            tracing::warn!(error = %e, bans = out.len(), "fleet: the runtime allowlist could not be read; correlated bans not appended");
            return Vec::new();
        }
    };
    out.into_iter()
        .filter(|d| {
            let allowed = nets.overlaps(&d.target);
            if allowed {
                tracing::info!(fleet_jail = %d.jail, target = %d.target, "fleet: distributed attack from an address on the runtime allowlist; not banned");
            }
            !allowed
        })
        .collect()
}

/// Appends to the ban log and wakes the pusher.
fn append(shared: &Shared, e: &FleetLogEntry) -> Result<i64, palisade_store::StoreError> {
    let seq = with_store(&shared.store, |s| s.log_append(e))?;
    shared.wake.notify_one();
    Ok(seq)
}

/// Checksum of a set of targets as both sides compute it.
pub fn checksum_of<'a>(targets: impl IntoIterator<Item = &'a ipnet::IpNet>) -> String {
    let text = palisade_proto::fleet::ban_set_text(targets);
    let d = sha2::Sha256::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The correlator as the server's [`EventSink`]: a detection appends a fleet ban for every
/// agent (scope all), lasting the fleet jail's `ban_time` from now.
pub struct CorrelatorSink {
    corr: palisade_detect::correlate::Correlator,
    specs: Vec<palisade_detect::correlate::FleetJailSpec>,
    allow: palisade_core::Allowlist,
}

impl CorrelatorSink {
    /// From the configuration's `[[fleet_jail]]` settings (`None` when there are none).
    pub fn new(settings: &[palisade_config::FleetJailSettings]) -> Option<CorrelatorSink> {
        if settings.is_empty() {
            return None;
        }
        let specs: Vec<_> = settings
            .iter()
            .map(|s| {
                let mut spec = palisade_detect::correlate::FleetJailSpec::new(
                    s.name.clone(),
                    s.max_retry,
                    s.find_time,
                    s.ban_time,
                );
                spec.jails = s.jails.clone();
                spec.min_hosts = s.min_hosts;
                spec.ipv4_prefix = s.ipv4_prefix;
                spec.ipv6_prefix = s.ipv6_prefix;
                spec
            })
            .collect();
        Some(CorrelatorSink {
            corr: palisade_detect::correlate::Correlator::new(&specs),
            specs,
            allow: palisade_core::Allowlist::default(),
        })
    }

    /// Addresses never banned: a detection that overlaps them is logged, not appended.
    pub fn with_allowlist(mut self, allow: palisade_core::Allowlist) -> Self {
        self.allow = allow;
        self
    }
}

impl EventSink for CorrelatorSink {
    fn observe(&mut self, host: &str, jail: &str, event: &Event) -> Vec<FleetLogEntry> {
        let now = crate::now();
        let allow = &self.allow;
        self.corr
            .observe(host, jail, event.ip, event.time, event.failure)
            .into_iter()
            .filter(|d| {
                let allowed = allow.overlaps(&d.target);
                if allowed {
                    tracing::info!(fleet_jail = %d.fleet_jail, target = %d.target, "fleet: distributed attack from an allowlisted address; not banned");
                }
                !allowed
            })
            .map(|d| {
                tracing::info!(
                    fleet_jail = %d.fleet_jail,
                    target = %d.target,
                    hosts = d.hosts.len(),
                    failures = d.failures,
                    "fleet: distributed attack detected; banning on every agent"
                );
                FleetLogEntry {
                    seq: 0,
                    action: "ban".into(),
                    target: d.target,
                    jail: d.fleet_jail.clone(),
                    reason: format!(
                        "{} failures from {} hosts ({})",
                        d.failures,
                        d.hosts.len(),
                        d.fleet_jail
                    ),
                    created: now,
                    expires: d
                        .ban_time
                        .map(|b| Timestamp(now.0.saturating_add(b.as_micros() as i64))),
                    origin: None,
                    scope: None,
                }
            })
            .collect()
    }
    fn log_entry(&mut self, entry: &FleetLogEntry) {
        crate::cluster::track(&mut self.corr, entry);
    }
    fn reset(&mut self) {
        self.corr = palisade_detect::correlate::Correlator::new(&self.specs);
    }
    fn horizon(&self) -> Duration {
        self.specs
            .iter()
            .map(|s| s.find_time)
            .max()
            .unwrap_or_default()
    }
}
