//! Simulated fleet agents: the protocol side of the load generator (shared by the
//! `fleet_load` example and the short CI test `tests/fleet_load_sim.rs`). Each agent is one
//! tokio task holding one WebSocket-over-TLS connection with the real agent's TLS (pinned
//! fingerprint) and WebSocket settings, keeping its "spool" in memory (events are numbered 1.. and regenerated on demand),
//! resending everything above the server's acknowledged mark after a reconnect, and reporting
//! every ban it receives with the instant it arrived.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use ipnet::IpNet;
use palisade_proto::fleet::{
    decode_server, encode as encode_msg, AgentMsg, BanAction, Hello, ServerMsg, WireEvent,
    PROTOCOL_VERSION,
};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Events per `events` message (the protocol's maximum).
pub const MAX_BATCH: u64 = palisade_proto::fleet::MAX_BATCH as u64;

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Where and how to reach the server.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub url: String,
    pub tls: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl Target {
    /// `url` = `wss://HOST:PORT[/path]`; `fingerprint` = lower-case hex SHA-256 of the DER.
    pub fn new(url: &str, fingerprint: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("wss://")
            .ok_or_else(|| format!("{url}: not a wss:// URL"))?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| format!("{url}: no port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port: u16 = port.parse().map_err(|_| format!("{url}: bad port"))?;
        // The agents' own TLS settings: only the pinned certificate is trusted.
        let cfg = palisade_fleet::tls::client_config(&fingerprint.to_ascii_lowercase())
            .map_err(|e| e.to_string())?;
        let server_name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        Ok(Target {
            host,
            port,
            url: url.to_string(),
            tls: TlsConnector::from(cfg),
            server_name,
        })
    }

    /// Opens one WebSocket with the given extra headers.
    pub async fn open(&self, headers: &[(&'static str, String)]) -> Result<Ws, String> {
        self.open_from(headers, None).await.map_err(|e| match e {
            OpenError::Busy(d) => format!("busy: retry after {} s", d.as_secs()),
            OpenError::Other(e) => e,
        })
    }

    /// Same, from the local address `source` (several 127.0.0.x spread 10,000 connections
    /// over more ephemeral ports); tells a 503 + `Retry-After` apart.
    pub async fn open_from(
        &self,
        headers: &[(&'static str, String)],
        source: Option<IpAddr>,
    ) -> Result<Ws, OpenError> {
        let tcp = match source {
            None => TcpStream::connect((self.host.as_str(), self.port)).await,
            Some(src) => {
                let dst: IpAddr = self
                    .host
                    .parse()
                    .map_err(|_| OpenError::Other("source address needs an IP host".into()))?;
                let sock = if src.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(|e| OpenError::Other(format!("socket: {e}")))?;
                sock.bind(std::net::SocketAddr::new(src, 0))
                    .map_err(|e| OpenError::Other(format!("bind {src}: {e}")))?;
                sock.connect(std::net::SocketAddr::new(dst, self.port))
                    .await
            }
        }
        .map_err(|e| OpenError::Other(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| OpenError::Other(format!("tls: {e}")))?;
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| OpenError::Other(e.to_string()))?;
        for (k, v) in headers {
            req.headers_mut().insert(
                *k,
                HeaderValue::from_str(v)
                    .map_err(|e| OpenError::Other(format!("header {k}: {e}")))?,
            );
        }
        // The agents' own WebSocket settings (small buffers, 1 MiB messages).
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            req,
            tls,
            Some(palisade_fleet::ws_config()),
        )
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) if r.status().as_u16() == 503 => {
                OpenError::Busy(palisade_fleet::overload::parse_retry_after(
                    r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                ))
            }
            e => OpenError::Other(format!("upgrade: {e}")),
        })?;
        Ok(ws)
    }
}

/// Why a connection was not opened.
#[derive(Debug)]
pub enum OpenError {
    /// HTTP 503 with this `Retry-After`.
    Busy(Duration),
    /// Anything else.
    Other(String),
}

/// An enrolled agent.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    pub agent_id: String,
    pub key: String,
}

impl Identity {
    fn authorization(&self) -> String {
        format!("Agent {}.{}", self.agent_id, self.key)
    }
}

/// Splits `pst1.<secret>.<fingerprint>`.
pub fn parse_token(token: &str) -> Result<(String, String), String> {
    let mut it = token.trim().split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some("pst1"), Some(s), Some(f), None) if !s.is_empty() && f.len() == 64 => {
            Ok((s.to_string(), f.to_string()))
        }
        _ => Err("token is not pst1.<secret>.<fingerprint>".into()),
    }
}

fn parse_server(text: &str) -> Result<ServerMsg, String> {
    decode_server(text)
        .map(|(_, m)| m)
        .map_err(|e| format!("bad server message: {e}"))
}

fn encode(msg: AgentMsg) -> Message {
    Message::text(encode_msg(PROTOCOL_VERSION, &msg))
}

/// Enrolls one agent with the token's secret.
pub async fn enroll(target: &Target, secret: &str, name: &str) -> Result<Identity, String> {
    let mut ws = target
        .open(&[
            ("Authorization", format!("Enroll {secret}")),
            ("X-Palisade-Agent", name.to_string()),
        ])
        .await?;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return Err("enroll: no answer in 30 s".into()),
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => match parse_server(t.as_str())? {
                    ServerMsg::Enrolled { agent_id, key } => {
                        let _ = ws.close(None).await;
                        return Ok(Identity { name: name.to_string(), agent_id, key });
                    }
                    other => return Err(format!("enroll: unexpected {other:?}")),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("enroll: {e}")),
                None => return Err("enroll: closed".into()),
            }
        }
    }
}

/// How an agent produces events.
#[derive(Clone, Copy, Debug)]
pub enum Produce {
    /// No events (idle connection, bans only).
    Nothing,
    /// `total` events are in the spool from the start: ship them as fast as credit allows.
    Backlog { total: u64 },
    /// `per_sec` events a second from `start` (also while disconnected: the spool fills),
    /// until [`AgentStats::stop_producing`] freezes the count.
    Rate { per_sec: f64, start: Instant },
}

/// Counters one agent shares with the orchestrator.
#[derive(Default)]
pub struct AgentStats {
    pub connected: AtomicBool,
    pub welcomed: AtomicU64,
    pub acked: AtomicU64,
    pub produced_frozen: AtomicU64,
    pub frozen: AtomicBool,
    pub sessions_failed: AtomicU64,
    pub retry_later: AtomicU64,
    /// HTTP 503 refusals at the upgrade.
    pub busy: AtomicU64,
    pub snapshots: AtomicU64,
    /// The agent's ban cursor (the last log entry it has).
    pub ban_cursor: AtomicU64,
    /// Index (in the agent's targets) of the server of the current session.
    pub server: AtomicU64,
    pub last_error: std::sync::Mutex<String>,
}

impl AgentStats {
    pub fn stop_producing(&self, produced: u64) {
        self.produced_frozen.store(produced, Ordering::SeqCst);
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// A ban entry as an agent received it.
#[derive(Debug)]
pub struct Receipt {
    pub agent: usize,
    pub target: IpNet,
    pub action: BanAction,
    pub at: Instant,
    pub snapshot: bool,
}

pub enum Cmd {
    LocalBan(IpNet),
    Stop,
}

/// xorshift: jitter and addresses without a rand dependency.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct Agent {
    pub idx: usize,
    pub ident: Identity,
    pub target: Target,
    pub produce: Produce,
    pub stats: Arc<AgentStats>,
    pub receipts: mpsc::UnboundedSender<Receipt>,
    pub cmds: mpsc::UnboundedReceiver<Cmd>,
    /// The real agent's reconnect policy (full jitter, 1 s -> 60 s).
    pub backoff: palisade_fleet::backoff::Backoff,
    /// More server URLs (failover), tried in turn after `target`, as the real agent does.
    pub more_targets: Vec<Target>,
    /// Local address to connect from (None = the kernel's choice).
    pub source: Option<IpAddr>,
    /// Events in a row from one address (1 = every event from the next address: the
    /// worst case for the per-address rollups).
    pub repeat: u64,
    epoch: u64,
    acked: u64,
    ban_cursor: u64,
    rng: Rng,
    start_us: i64,
}

enum End {
    Stop,
    Retry(Option<Duration>),
}

/// Why a session ended without a stop.
enum Fail {
    /// Before the welcome (connect, TLS, refused): try the next server.
    Connect,
    /// HTTP 503: come back after this.
    Busy(Duration),
    /// A welcomed session was lost.
    Lost,
}

impl Agent {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        idx: usize,
        ident: Identity,
        target: Target,
        produce: Produce,
        stats: Arc<AgentStats>,
        receipts: mpsc::UnboundedSender<Receipt>,
        cmds: mpsc::UnboundedReceiver<Cmd>,
        seed: u64,
    ) -> Agent {
        let mut rng = Rng::new(seed ^ (idx as u64 + 1));
        let epoch = rng.next() >> 1;
        Agent {
            idx,
            ident,
            target,
            produce,
            stats,
            receipts,
            cmds,
            backoff: palisade_fleet::backoff::Backoff::default(),
            more_targets: Vec::new(),
            source: None,
            repeat: 1,
            epoch,
            acked: 0,
            ban_cursor: 0,
            rng,
            start_us: now_us(),
        }
    }

    /// Events in the spool so far (numbered 1..=produced).
    pub fn produced(&self) -> u64 {
        if self.stats.frozen.load(Ordering::SeqCst) {
            return self.stats.produced_frozen.load(Ordering::SeqCst);
        }
        match self.produce {
            Produce::Nothing => 0,
            Produce::Backlog { total } => total,
            Produce::Rate { per_sec, start } => (start.elapsed().as_secs_f64() * per_sec) as u64,
        }
    }

    fn event(&self, seq: u64) -> WireEvent {
        // Addresses from 100.64.0.0/10, one per (agent, (seq / repeat) % 4096): the server
        // sees repeat offenders as it would in real traffic; `repeat` events in a row come
        // from one address (a brute force's burst).
        let k = (self.idx as u32)
            .wrapping_mul(4096)
            .wrapping_add(((seq / self.repeat.max(1)) % 4096) as u32);
        let ip = IpAddr::V4(Ipv4Addr::from(0x6440_0000u32 | (k & 0x003f_ffff)));
        WireEvent {
            seq,
            jail: "sshd".into(),
            time_us: self.start_us + seq as i64,
            ip,
            filter: "sshd".into(),
            rule: "failed_password".into(),
            failure: true,
            user: Some("root".into()),
            evidence: format!(
                "Failed password for root from {ip} port {} ssh2",
                1024 + seq % 60000
            ),
        }
    }

    fn batch(&self, first: u64, last: u64) -> Message {
        encode(AgentMsg::Events {
            epoch: self.epoch,
            first_seq: first,
            last_seq: last,
            events: (first..=last).map(|s| self.event(s)).collect(),
        })
    }

    /// Runs until `Cmd::Stop` (or the command channel closes), reconnecting with the real
    /// agent's policy (palisade_fleet::backoff) across its targets.
    pub async fn run(mut self) {
        let mut targets = vec![self.target.clone()];
        targets.extend(self.more_targets.iter().cloned());
        let urls: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
        let mut servers = palisade_fleet::backoff::Servers::new(&urls);
        loop {
            let cur = servers.current().to_string();
            let ti = targets.iter().position(|t| t.url == cur).unwrap_or(0);
            self.target = targets[ti].clone();
            self.stats.server.store(ti as u64, Ordering::SeqCst);
            match self.session().await {
                Ok(End::Stop) => return,
                Ok(End::Retry(after)) => {
                    // retry_later message (a welcomed session).
                    if let Some(d) = after {
                        servers.busy_until(Instant::now() + d);
                    }
                }
                Err(Fail::Lost) if self.stats.connected.load(Ordering::SeqCst) => {
                    self.backoff.reset()
                }
                Err(Fail::Lost) => servers.failed(),
                Err(Fail::Connect) => servers.failed(),
                Err(Fail::Busy(d)) => {
                    self.stats.busy.fetch_add(1, Ordering::Relaxed);
                    let d = palisade_fleet::backoff::retry_after(d, self.rng.unit());
                    servers.busy_until(Instant::now() + d);
                }
            }
            self.stats.connected.store(false, Ordering::SeqCst);
            let b = self.backoff.fail(self.rng.unit());
            let wait = servers.wait(b, Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                c = self.cmds.recv() => if matches!(c, None | Some(Cmd::Stop)) { return },
            }
        }
    }

    fn fail(&self, e: String) -> Fail {
        self.stats.sessions_failed.fetch_add(1, Ordering::Relaxed);
        *self.stats.last_error.lock().unwrap() = e;
        Fail::Lost
    }

    async fn session(&mut self) -> Result<End, Fail> {
        let mut ws = match self
            .target
            .open_from(
                &[("Authorization", self.ident.authorization())],
                self.source,
            )
            .await
        {
            Ok(ws) => ws,
            Err(OpenError::Busy(d)) => return Err(Fail::Busy(d)),
            Err(OpenError::Other(e)) => {
                let _ = self.fail(e);
                return Err(Fail::Connect);
            }
        };
        let hello = encode(AgentMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            capabilities: vec!["events".into(), "ban".into()],
            agent: self.ident.name.clone(),
            software_version: "fleet_load".into(),
            epoch: self.epoch,
            ban_cursor: self.ban_cursor,
            agent_time_us: now_us(),
        }));
        if let Err(e) = ws.send(hello).await {
            return Err(self.fail(format!("hello: {e}")));
        }
        let mut credit: u64 = 0;
        let mut welcomed = false;
        // Batches sent and not yet acknowledged: their last seq.
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        let mut sent_to = self.acked;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let welcome_deadline = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(welcome_deadline);
        loop {
            if welcomed {
                let produced = self.produced();
                // As the real agent: a partial batch waits while another is in flight.
                while (in_flight.len() as u64) < credit
                    && sent_to < produced
                    && (in_flight.is_empty() || produced - sent_to >= MAX_BATCH)
                {
                    let last = produced.min(sent_to + MAX_BATCH);
                    if let Err(e) = ws.feed(self.batch(sent_to + 1, last)).await {
                        return Err(self.fail(format!("send: {e}")));
                    }
                    in_flight.push_back(last);
                    sent_to = last;
                }
                if let Err(e) = ws.flush().await {
                    return Err(self.fail(format!("flush: {e}")));
                }
            }
            tokio::select! {
                _ = &mut welcome_deadline, if !welcomed => {
                    let _ = self.fail("no welcome in 60 s".into());
                    return Err(Fail::Connect);
                }
                _ = tick.tick(), if welcomed && matches!(self.produce, Produce::Rate { .. }) => {}
                c = self.cmds.recv() => match c {
                    None | Some(Cmd::Stop) => {
                        let _ = ws.close(None).await;
                        return Ok(End::Stop);
                    }
                    Some(Cmd::LocalBan(t)) => {
                        let m = encode(AgentMsg::LocalBan {
                            target: t,
                            jail: "sshd".into(),
                            reason: "fleet_load".into(),
                            created_us: now_us(),
                            expires_us: Some(now_us() + 3_600_000_000),
                        });
                        if let Err(e) = ws.send(m).await {
                            return Err(self.fail(format!("local_ban: {e}")));
                        }
                    }
                },
                m = ws.next() => {
                    let text = match m {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(f))) => {
                            return Err(self.fail(format!("closed by server: {f:?}")));
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(self.fail(format!("read: {e}"))),
                        None => return Err(self.fail("connection closed".into())),
                    };
                    let msg = match parse_server(text.as_str()) {
                        Ok(m) => m,
                        Err(e) => return Err(self.fail(e)),
                    };
                    match msg {
                        ServerMsg::Welcome { acked_seq, credit: c, .. } => {
                            // The server's mark is the truth: resend what is above it.
                            self.acked = acked_seq;
                            sent_to = acked_seq;
                            in_flight.clear();
                            credit = c as u64;
                            welcomed = true;
                            self.backoff.reset();
                            self.stats.acked.store(self.acked, Ordering::SeqCst);
                            self.stats.welcomed.fetch_add(1, Ordering::SeqCst);
                            self.stats.connected.store(true, Ordering::SeqCst);
                        }
                        ServerMsg::Ack { seq, credit: c, .. } => {
                            if seq > self.acked {
                                self.acked = seq;
                            }
                            while in_flight.front().is_some_and(|&l| l <= seq) {
                                in_flight.pop_front();
                            }
                            credit = c as u64;
                            self.stats.acked.store(self.acked, Ordering::SeqCst);
                        }
                        ServerMsg::Bans { entries } => {
                            let at = Instant::now();
                            for b in entries {
                                self.ban_cursor = self.ban_cursor.max(b.seq);
                                self.stats.ban_cursor.store(self.ban_cursor, Ordering::SeqCst);
                                let _ = self.receipts.send(Receipt {
                                    agent: self.idx,
                                    target: b.target,
                                    action: b.action,
                                    at,
                                    snapshot: false,
                                });
                            }
                        }
                        ServerMsg::Snapshot { cursor, bans, more } => {
                            let at = Instant::now();
                            if !more {
                                self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
                            }
                            self.ban_cursor = cursor;
                            self.stats.ban_cursor.store(cursor, Ordering::SeqCst);
                            for b in bans {
                                let _ = self.receipts.send(Receipt {
                                    agent: self.idx,
                                    target: b.target,
                                    action: BanAction::Ban,
                                    at,
                                    snapshot: true,
                                });
                            }
                        }
                        ServerMsg::Ping { nonce, .. } => {
                            let m = encode(AgentMsg::Pong {
                                nonce,
                                agent_time_us: now_us(),
                                head_seq: self.produced(),
                            });
                            if let Err(e) = ws.send(m).await {
                                return Err(self.fail(format!("pong: {e}")));
                            }
                        }
                        ServerMsg::RetryLater { after_secs } => {
                            self.stats.retry_later.fetch_add(1, Ordering::Relaxed);
                            let _ = ws.close(None).await;
                            let d = palisade_fleet::backoff::retry_after(Duration::from_secs(after_secs), self.rng.unit());
                            return Ok(End::Retry(Some(d)));
                        }
                        // Never sent: simulated agents announce neither `analyze` nor `forward`.
                        ServerMsg::Enrolled { .. }
                        | ServerMsg::Analyze { .. }
                        | ServerMsg::LinesAck { .. } => {}
                    }
                }
            }
        }
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[k.clamp(1, sorted.len()) - 1])
}
