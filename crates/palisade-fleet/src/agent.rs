//! The agent: enrollment ([`join`]) and the long-lived connection ([`spawn`]).
//!
//! The agent's own store is its spool: the shipper reads local events by id above the
//! server's acknowledged mark and sends them in batches of at most 1,000 within the server's
//! credit; nothing is deleted on acknowledgement. While the server is away, the spool cap
//! (`spool_max_events`, `spool_max_age`) deletes the oldest unshipped events only and a `gap`
//! is sent on the next connection. Fleet bans are applied through the daemon
//! ([`AgentControl`], origin `fleet`); the ban cursor is kept in `fleet_state`. Bans the
//! daemon takes itself are reported (`local_ban`, `local_unban`) through the [`LocalBans`]
//! observer. The checksum covers the fleet bans the agent's store holds in force; the daemon's
//! periodic reconcile (`[general] reconcile_interval`) re-applies every decision in force to
//! the responders, which is what restores an element deleted from a firewall set by hand.

use crate::ident::{Identity, Token};
use crate::{tls, FleetError, PING_EVERY};
use futures_util::{SinkExt, StreamExt};
use ipnet::IpNet;
use palisade_core::{Decision, Observer, Origin, Timestamp, UnbanReason};
use palisade_proto::fleet::{
    decode_server, encode, AgentMsg, BanAction, BanEntry, Hello, ServerMsg, WireEvent, MAX_BATCH,
    PROTOCOL_VERSION, V_CHECKSUM,
};
use palisade_store::fleet::FleetStore;
use palisade_store::{DecisionQuery, Store};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::Message;

/// What the agent needs from the daemon (implemented by the binary over its control handle).
pub trait AgentControl: Send + Sync {
    /// Records and enforces a fleet ban (origin [`Origin::Fleet`]).
    fn apply_ban(&self, d: Decision) -> Result<(), String>;
    /// Lifts the bans of `target`.
    fn lift_ban(&self, target: IpNet) -> Result<(), String>;
}

/// The agent side of a fleet connection.
pub type ClientWs =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens a connection to `url` with the pinned `fingerprint` and the given headers.
pub async fn connect(
    url: &str,
    fingerprint: &str,
    headers: &[(&'static str, String)],
) -> Result<ClientWs, FleetError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| FleetError::Usage(format!("bad server URL {url:?}")))?;
    if uri.scheme_str() != Some("wss") {
        return Err(FleetError::Usage(format!(
            "server URL {url:?}: expected wss://HOST:PORT"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| FleetError::Usage(format!("server URL {url:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(7443);
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| FleetError::Net(format!("{url}: connection timed out")))?
    .map_err(|e| FleetError::Net(format!("{url}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|_| FleetError::Usage(format!("server URL {url:?}: bad host")))?;
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(tls::client_config(fingerprint)?).connect(name, tcp),
    )
    .await
    .map_err(|_| FleetError::Net(format!("{url}: TLS handshake timed out")))?
    .map_err(|e| FleetError::Net(format!("{url}: TLS: {e}")))?;
    let mut req = url
        .into_client_request()
        .map_err(|e| FleetError::Usage(format!("{url}: {e}")))?;
    for (k, v) in headers {
        req.headers_mut().insert(
            *k,
            HeaderValue::from_str(v).map_err(|_| FleetError::Usage("bad header value".into()))?,
        );
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async_with_config(req, tls, Some(crate::ws_config())),
    )
    .await
    .map_err(|_| FleetError::Net(format!("{url}: upgrade timed out")))?
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(r)
            if r.status()
                == tokio_tungstenite::tungstenite::http::StatusCode::SERVICE_UNAVAILABLE =>
        {
            FleetError::Busy {
                url: url.to_string(),
                after: crate::overload::parse_retry_after(
                    r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                ),
            }
        }
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            let body = r
                .body()
                .as_ref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(200)
                        .collect::<String>()
                })
                .unwrap_or_default();
            FleetError::Refused(format!("{url}: the server answered {}: {body}", r.status()))
        }
        e => FleetError::Net(format!("{url}: {e}")),
    })?;
    Ok(ws)
}

/// `palisade fleet join URL --token T`: enrolls this host as `name`; writes and returns the
/// identity.
pub fn join(
    url: &str,
    token: &str,
    name: &str,
    state_dir: &std::path::Path,
    force: bool,
) -> Result<Identity, FleetError> {
    let token = Token::parse(token)?;
    if !palisade_config::valid_agent_name(name) {
        return Err(FleetError::Usage(format!(
            "agent name {name:?}: 1 to 64 letters, digits, '.', '_' or '-' (set [fleet] name)"
        )));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FleetError::Io(e.to_string()))?;
    let (agent_id, key) = rt.block_on(async {
        let mut headers = vec![
            ("authorization", format!("Enroll {}", token.secret)),
            ("x-palisade-agent", name.to_string()),
        ];
        if force {
            headers.push(("x-palisade-force", "1".into()));
        }
        let mut ws = connect(url, &token.fingerprint, &headers).await?;
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| FleetError::Net("no answer to the enrollment".into()))?;
        match m {
            Some(Ok(Message::Text(t))) => match decode_server(t.as_str()) {
                Ok((_, ServerMsg::Enrolled { agent_id, key })) => Ok((agent_id, key)),
                Ok(_) => Err(FleetError::Net(
                    "unexpected answer to the enrollment".into(),
                )),
                Err(e) => Err(FleetError::Net(e.to_string())),
            },
            _ => Err(FleetError::Net("the server closed the enrollment".into())),
        }
    })?;
    let id = Identity {
        urls: vec![url.to_string()],
        fingerprint: token.fingerprint,
        agent_id,
        name: name.to_string(),
        key,
    };
    id.save(state_dir)?;
    Ok(id)
}

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// `[general] state_dir` (identity).
    pub state_dir: PathBuf,
    /// Store URL (the spool and the decisions).
    pub store_url: String,
    /// Spool cap: events.
    pub spool_max_events: u64,
    /// Spool cap: age.
    pub spool_max_age: Duration,
    /// Checksum interval.
    pub checksum_interval: Duration,
    /// Remote analysis of the allowed access logs (`None`: not offered).
    pub analyze: Option<crate::remote_analyze::AgentAnalyze>,
    /// `[fleet] server`: the server URLs, tried in turn (those of the identity, from
    /// `fleet join`, are added after them).
    pub servers: Vec<String>,
}

/// The observer that reports the daemon's own bans to the agent connection.
pub struct LocalBans {
    tx: mpsc::Sender<AgentMsg>,
}

/// The receiving end, handed to [`spawn`].
pub struct LocalBansRx(mpsc::Receiver<AgentMsg>);

impl LocalBans {
    /// An observer and its receiver.
    pub fn new() -> (Arc<LocalBans>, LocalBansRx) {
        let (tx, rx) = mpsc::channel(10_000);
        (Arc::new(LocalBans { tx }), LocalBansRx(rx))
    }
}

impl Observer for LocalBans {
    fn ban(&self, d: &Decision) {
        if d.origin == Origin::Fleet || d.simulated {
            return;
        }
        let m = AgentMsg::LocalBan {
            target: d.target,
            jail: d.jail.clone(),
            reason: d.reason.clone(),
            created_us: d.created.0,
            expires_us: d.expires.map(|t| t.0),
        };
        if self.tx.try_send(m).is_err() {
            tracing::warn!(target = %d.target, "fleet: local ban not reported (queue full)");
        }
    }
    fn unban(&self, d: &Decision, why: UnbanReason) {
        if d.origin == Origin::Fleet || why != UnbanReason::Manual {
            return;
        }
        let _ = self.tx.try_send(AgentMsg::LocalUnban { target: d.target });
    }
}

/// A running agent connection.
pub struct AgentHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentHandle {
    /// Stops it.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Agent {
    ident: Identity,
    opts: AgentOptions,
    fleet: Box<dyn FleetStore>,
    store: Box<dyn Store>,
    control: Arc<dyn AgentControl>,
    local: mpsc::Receiver<AgentMsg>,
    stop: Arc<AtomicBool>,
    epoch: u64,
    ban_cursor: u64,
    acked: u64,
    /// Spool gap not yet reported: (from, to).
    pending_gap: Option<(u64, u64)>,
    analyze: crate::remote_analyze::AgentRunner,
    /// A forwarder's raw lines ([`crate::forward`]).
    forward: Option<crate::forward::Forwarder>,
    /// The current session got its `welcome`.
    welcomed: bool,
    /// The server asked to come back after this.
    retry: Option<Duration>,
}

/// How a session ended (for the reconnect policy).
enum Session {
    /// Closed (by the server or on stop).
    Closed { welcomed: bool },
    /// The server said `retry_later`.
    RetryLater(Duration),
}

/// A uniform draw in `[0, 1)` for the jitter.
fn unit() -> f64 {
    (crate::ident::random_u63() >> 10) as f64 / (1u64 << 53) as f64
}

/// Starts the agent connection (own thread, own runtime). Fails at once when this host is
/// not enrolled.
pub fn spawn(
    opts: AgentOptions,
    control: Arc<dyn AgentControl>,
    local: LocalBansRx,
) -> Result<AgentHandle, FleetError> {
    spawn_with(opts, control, local, None)
}

/// [`spawn`] for a forwarder: the connection also ships the raw lines of `forward`.
pub fn spawn_with(
    opts: AgentOptions,
    control: Arc<dyn AgentControl>,
    local: LocalBansRx,
    forward: Option<crate::forward::Forwarder>,
) -> Result<AgentHandle, FleetError> {
    let ident = Identity::load(&opts.state_dir)?.ok_or_else(|| {
        FleetError::Usage(format!(
            "this agent is not enrolled: run `palisade fleet join URL --token TOKEN` first (no {})",
            Identity::path(&opts.state_dir).display()
        ))
    })?;
    let mut fleet = palisade_store::fleet::open(&opts.store_url)?;
    let store = palisade_store::open(&opts.store_url)?;
    let epoch = match fleet.state("epoch")?.and_then(|s| s.parse::<u64>().ok()) {
        Some(e) => e,
        None => {
            let e = crate::ident::random_u63();
            fleet.set_state("epoch", &e.to_string())?;
            e
        }
    };
    let get = |f: &mut Box<dyn FleetStore>, k: &str| -> Result<u64, FleetError> {
        Ok(f.state(k)?.and_then(|s| s.parse().ok()).unwrap_or(0))
    };
    let ban_cursor = get(&mut fleet, "ban_cursor")?;
    let acked = get(&mut fleet, "acked_seq")?;
    let stop = Arc::new(AtomicBool::new(false));
    let analyze = crate::remote_analyze::AgentRunner::new(opts.analyze.clone());
    let mut agent = Agent {
        analyze,
        ident,
        opts,
        fleet,
        store,
        control,
        local: local.0,
        stop: stop.clone(),
        epoch,
        ban_cursor,
        acked,
        pending_gap: None,
        forward,
        welcomed: false,
        retry: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fleet-agent")
        .enable_all()
        .build()
        .map_err(|e| FleetError::Io(e.to_string()))?;
    let thread = std::thread::Builder::new()
        .name("fleet-agent".into())
        .spawn(move || rt.block_on(agent.run()))
        .map_err(|e| FleetError::Io(e.to_string()))?;
    Ok(AgentHandle {
        stop,
        thread: Some(thread),
    })
}

fn b<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Agent {
    async fn run(&mut self) {
        // Reconnect policy: crate::backoff (full jitter 1 s -> 60 s, across the URLs, a
        // server's "come back later" honoured).
        let mut urls = self.opts.servers.clone();
        urls.extend(self.ident.urls.iter().cloned());
        let mut servers = crate::backoff::Servers::new(&urls);
        let mut backoff = crate::backoff::Backoff::default();
        while !self.stop.load(Ordering::Relaxed) {
            self.trim_spool();
            let url = servers.current().to_string();
            let headers = [(
                "authorization",
                format!("Agent {}.{}", self.ident.agent_id, self.ident.key),
            )];
            let mut wait = None;
            match connect(&url, &self.ident.fingerprint, &headers).await {
                Ok(ws) => match self.session_outcome(ws).await {
                    Ok(Session::Closed { welcomed }) => {
                        tracing::info!(%url, "fleet: connection closed");
                        if welcomed {
                            backoff.reset();
                            servers.connected();
                        }
                    }
                    Ok(Session::RetryLater(after)) => {
                        tracing::warn!(%url, after_secs = after.as_secs(), "fleet: the server asked to come back later");
                        let d = crate::backoff::retry_after(after, unit());
                        servers.busy_until(std::time::Instant::now() + d);
                        wait = Some(backoff.fail(unit()));
                    }
                    Err((welcomed, e)) => {
                        tracing::warn!(%url, error = %e, "fleet: connection lost");
                        if welcomed {
                            backoff.reset();
                            servers.connected();
                        } else {
                            servers.failed();
                        }
                    }
                },
                Err(FleetError::Busy { after, .. }) => {
                    tracing::warn!(%url, after_secs = after.as_secs(), "fleet: the server is busy; it asked to come back later");
                    let d = crate::backoff::retry_after(after, unit());
                    servers.busy_until(std::time::Instant::now() + d);
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, "fleet: cannot reach the server");
                    servers.failed();
                }
            }
            let b = wait.unwrap_or_else(|| backoff.fail(unit()));
            let d = servers.wait(b, std::time::Instant::now());
            let until = std::time::Instant::now() + d;
            while std::time::Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// One session, classified for the reconnect policy.
    async fn session_outcome(&mut self, ws: ClientWs) -> Result<Session, (bool, String)> {
        self.welcomed = false;
        self.retry = None;
        let r = self.session(ws).await;
        let welcomed = self.welcomed;
        match (r, self.retry.take()) {
            (_, Some(d)) => Ok(Session::RetryLater(d)),
            (Ok(()), None) => Ok(Session::Closed { welcomed }),
            (Err(e), None) => Err((welcomed, e)),
        }
    }

    fn trim_spool(&mut self) {
        let older = Timestamp(crate::now().0 - self.opts.spool_max_age.as_micros() as i64);
        match b(|| {
            self.fleet
                .spool_trim(self.acked as i64, self.opts.spool_max_events, older)
        }) {
            Ok(Some((from, to))) => {
                tracing::warn!(
                    from,
                    to,
                    "fleet: spool cap reached; oldest unshipped events dropped"
                );
                let (from, to) = (from as u64, to as u64);
                self.pending_gap = Some(match self.pending_gap {
                    Some((f, t)) => (f.min(from), t.max(to)),
                    None => (from, to),
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "fleet: spool cap"),
        }
    }

    /// The fleet bans the daemon holds in force (from the store).
    fn held(&mut self) -> Result<BTreeSet<IpNet>, String> {
        let now = crate::now();
        b(|| {
            self.store.decisions(&DecisionQuery {
                origin: Some(Origin::Fleet),
                active_at: Some(now),
                limit: Some(u32::MAX),
                ..Default::default()
            })
        })
        .map(|v| v.into_iter().map(|d| d.decision.target).collect())
        .map_err(|e| e.to_string())
    }

    fn apply(&mut self, e: &BanEntry) {
        let now = crate::now();
        match e.action {
            BanAction::Ban => {
                if e.expires_us.is_some_and(|x| x <= now.0) {
                    return;
                }
                let d = Decision {
                    id: 0,
                    target: e.target.trunc(),
                    jail: if e.jail.is_empty() {
                        "fleet".into()
                    } else {
                        e.jail.clone()
                    },
                    origin: Origin::Fleet,
                    reason: e.reason.clone(),
                    created: now,
                    expires: e.expires_us.map(Timestamp),
                    simulated: false,
                    level: 0,
                };
                if let Err(err) = self.control.apply_ban(d) {
                    tracing::warn!(target = %e.target, error = %err, "fleet: applying a fleet ban");
                }
            }
            BanAction::Unban => {
                if let Err(err) = self.control.lift_ban(e.target.trunc()) {
                    tracing::warn!(target = %e.target, error = %err, "fleet: lifting a fleet ban");
                }
            }
        }
    }

    fn set_cursor(&mut self, c: u64) {
        self.ban_cursor = c;
        let _ = b(|| self.fleet.set_state("ban_cursor", &c.to_string()));
    }

    async fn session(&mut self, mut ws: ClientWs) -> Result<(), String> {
        let mut capabilities: Vec<String> = vec!["events".into(), "ban".into(), "checksum".into()];
        capabilities.extend(self.forward.as_ref().map(|f| f.capability()));
        capabilities.extend(self.analyze.capability());
        let hello = AgentMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            capabilities,
            agent: self.ident.name.clone(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            epoch: self.epoch,
            ban_cursor: self.ban_cursor,
            agent_time_us: crate::now().0,
        });
        ws.send(Message::text(encode(PROTOCOL_VERSION, &hello)))
            .await
            .map_err(|e| e.to_string())?;
        let (v, mut credit, server_caps) =
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => match decode_server(t.as_str()) {
                    Ok((
                        _,
                        ServerMsg::Welcome {
                            protocol_version,
                            acked_seq,
                            credit,
                            capabilities,
                            ..
                        },
                    )) => {
                        self.acked = acked_seq;
                        (protocol_version, credit.max(1), capabilities)
                    }
                    Ok((_, ServerMsg::RetryLater { after_secs })) => {
                        self.retry = Some(Duration::from_secs(after_secs));
                        return Ok(());
                    }
                    Ok(_) => return Err("expected welcome".into()),
                    Err(e) => return Err(e.to_string()),
                },
                Ok(Some(Ok(Message::Close(f)))) => {
                    return Err(format!(
                        "closed by the server: {}",
                        f.map(|f| f.reason.to_string()).unwrap_or_default()
                    ))
                }
                _ => return Err("no welcome".into()),
            };
        self.welcomed = true;
        let _ = b(|| self.fleet.set_state("acked_seq", &self.acked.to_string()));
        tracing::info!(acked = self.acked, protocol = v, "fleet: connected");
        self.analyze.forget_stale();
        if let Some((from, to)) = self.pending_gap.take() {
            if v >= V_CHECKSUM {
                let m = AgentMsg::Gap {
                    epoch: self.epoch,
                    from_seq: from,
                    to_seq: to,
                    reason: "spool cap".into(),
                };
                ws.send(Message::text(encode(v, &m)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if let Some(f) = &mut self.forward {
            for m in f.on_welcome(v, &server_caps) {
                ws.send(Message::text(encode(v, &m)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let forward_wake = self.forward.as_ref().map(|f| f.waker());
        let mut sent = self.acked;
        let mut inflight: u32 = 0;
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        let mut checksum = tokio::time::interval(self.opts.checksum_interval);
        checksum.tick().await;
        let mut last_rx = std::time::Instant::now();
        let mut snapshot: Option<(u64, Vec<BanEntry>)> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                let _ = ws.close(None).await;
                return Ok(());
            }
            // Ship while there is credit and something to ship.
            while inflight < credit {
                let evs = b(|| self.fleet.local_events_after(sent as i64, MAX_BATCH as u32))
                    .map_err(|e| e.to_string())?;
                let Some(last) = evs.last() else { break };
                // A partial batch waits while another is in flight: its events ride with the
                // next ack's batch. Full batches pipeline (a backlog drains at full speed);
                // a trickle costs the server one transaction per round trip, not one per
                // 100 ms poll (1,000 agents at 5 events/s were 5,000 transactions a second).
                if inflight > 0 && evs.len() < MAX_BATCH {
                    break;
                }
                let last_seq = last.id as u64;
                let m = AgentMsg::Events {
                    epoch: self.epoch,
                    first_seq: sent + 1,
                    last_seq,
                    events: evs
                        .into_iter()
                        .map(|s| WireEvent {
                            seq: s.id as u64,
                            jail: s.jail,
                            time_us: s.event.time.0,
                            ip: s.event.ip,
                            filter: s.event.filter.to_string(),
                            rule: s.event.rule.to_string(),
                            failure: s.event.failure,
                            user: s.event.user.map(|u| u.to_string()),
                            evidence: s.event.evidence.to_string(),
                        })
                        .collect(),
                };
                ws.send(Message::text(encode(v, &m)))
                    .await
                    .map_err(|e| e.to_string())?;
                sent = last_seq;
                inflight += 1;
            }
            // A forwarder's raw lines, within their own credit.
            while let Some(m) = self.forward.as_mut().and_then(|f| b(|| f.next_batch())) {
                ws.send(Message::text(encode(v, &m)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tokio::select! {
                _ = async { match &forward_wake { Some(n) => n.notified().await, None => std::future::pending().await } } => {}
                _ = poll.tick() => {
                    if last_rx.elapsed() > PING_EVERY * 3 {
                        return Err("the server went silent".into());
                    }
                }
                _ = checksum.tick(), if v >= V_CHECKSUM => {
                    let held = self.held()?;
                    let m = AgentMsg::Checksum {
                        cursor: self.ban_cursor,
                        count: held.len() as u64,
                        sum: crate::server::checksum_of(held.iter()),
                    };
                    ws.send(Message::text(encode(v, &m))).await.map_err(|e| e.to_string())?;
                }
                Some(m) = self.analyze.recv() => {
                    ws.send(Message::text(encode(v, &m))).await.map_err(|e| e.to_string())?;
                }
                l = self.local.recv() => {
                    if let Some(m) = l {
                        ws.send(Message::text(encode(v, &m))).await.map_err(|e| e.to_string())?;
                    }
                }
                m = ws.next() => {
                    last_rx = std::time::Instant::now();
                    let text = match m {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(f))) => {
                            return Err(format!("closed by the server: {}", f.map(|f| f.reason.to_string()).unwrap_or_default()));
                        }
                        None => return Err("connection closed".into()),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.to_string()),
                    };
                    let msg = match decode_server(text.as_str()) {
                        Ok((_, m)) => m,
                        Err(e) => {
                            let _ = ws.close(None).await;
                            return Err(e.to_string());
                        }
                    };
                    match msg {
                        ServerMsg::Ack { epoch, seq, credit: c } => {
                            if epoch != self.epoch { continue; }
                            inflight = inflight.saturating_sub(1);
                            credit = c.max(1);
                            self.acked = self.acked.max(seq);
                            let _ = b(|| self.fleet.set_state("acked_seq", &self.acked.to_string()));
                        }
                        ServerMsg::Bans { entries } => {
                            for e in &entries {
                                self.apply(e);
                            }
                            if let Some(last) = entries.last() {
                                self.set_cursor(last.seq.max(self.ban_cursor));
                            }
                        }
                        ServerMsg::Snapshot { cursor, bans, more } => {
                            let (_, acc) = snapshot.get_or_insert((cursor, Vec::new()));
                            acc.extend(bans);
                            if !more {
                                let (cursor, bans) = snapshot.take().unwrap_or_default();
                                self.replace_set(cursor, &bans)?;
                            }
                        }
                        ServerMsg::Ping { nonce, .. } => {
                            let head = b(|| self.fleet.local_head()).unwrap_or(0).max(0) as u64;
                            let m = AgentMsg::Pong { nonce, agent_time_us: crate::now().0, head_seq: head };
                            ws.send(Message::text(encode(v, &m))).await.map_err(|e| e.to_string())?;
                        }
                        ServerMsg::RetryLater { after_secs } => {
                            let _ = ws.close(None).await;
                            self.retry = Some(Duration::from_secs(after_secs));
                            return Ok(());
                        }
                        ServerMsg::Analyze { id, query } => self.analyze.start(id, query),
                        m @ ServerMsg::LinesAck { .. } => {
                            if let Some(f) = &mut self.forward {
                                b(|| f.on_server(&m));
                            }
                        }
                        ServerMsg::Welcome { .. } | ServerMsg::Enrolled { .. } => {}
                    }
                }
            }
        }
    }

    /// Makes the fleet ban set equal to `bans`: lifts the others, applies the missing.
    fn replace_set(&mut self, cursor: u64, bans: &[BanEntry]) -> Result<(), String> {
        let held = self.held()?;
        let want: BTreeSet<IpNet> = bans.iter().map(|e| e.target.trunc()).collect();
        for t in held.difference(&want) {
            if let Err(e) = self.control.lift_ban(*t) {
                tracing::warn!(target = %t, error = %e, "fleet: lifting a fleet ban (snapshot)");
            }
        }
        for e in bans.iter().filter(|e| !held.contains(&e.target.trunc())) {
            self.apply(e);
        }
        tracing::info!(
            bans = want.len(),
            cursor,
            "fleet: ban set replaced by a snapshot"
        );
        self.set_cursor(cursor);
        Ok(())
    }
}
