//! Palisade's HTTP side: the REST API (`/api/v1`, OpenAPI at `/api/v1/openapi.json`), the
//! live feed (Server-Sent Events), Prometheus metrics, and the embedded dashboard.
//!
//! The server runs on its own thread with its own small tokio runtime, so the daemon (plain
//! threads) never depends on async. It does not depend on the pipeline either: the daemon is
//! reached through the [`ControlApi`] trait (ban, unban, status, allowlist), and events and
//! decisions arrive through a [`FeedHub`] that the binary feeds from the daemon's observer.
//! Reads go straight to the store through a small pool of connections.
//!
//! ```text
//!  daemon ──Observer──▶ FeedHub ──broadcast──▶ /api/v1/feed (SSE)
//!  daemon ◀──ControlApi── handlers ──StorePool──▶ SQLite / PostgreSQL
//! ```
//!
//! Security model: every route but the dashboard's static files, `/api/v1/health`,
//! `/api/v1/openapi.json` and `/api/v1/auth/login` needs a session cookie or an API token.
//! State changes by cookie need the session's CSRF token in `X-CSRF-Token`; by token, the
//! `admin` scope. See [`auth`].

#![warn(missing_docs)]

mod api;
mod assets;
mod audit;
pub mod auth;
mod control;
mod error;
mod fleet;
pub use palisade_geo as geo;
mod openapi;
mod pool;
pub mod serve;
mod stats;
mod tls;

pub use control::{ControlApi, ControlError, FeedHub, FeedItem, StatusReport};
pub use error::ApiError;
pub use geo::{GeoInfo, GeoIp, GeoPaths};
pub use serve::Limits as ConnLimits;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the HTTP server (built from the `[server]` configuration section).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:9380` by default; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// GeoIP databases (`.mmdb`); missing ones mean no geolocation, not an error.
    pub geoip: GeoPaths,
    /// Limits on login attempts.
    pub login_limits: LoginLimits,
    /// How long a session lasts without use.
    pub session_idle: Duration,
    /// Store connections used by request handlers.
    pub store_connections: usize,
    /// How long `/api/v1/stats` answers may be reused before they are recomputed in the
    /// background.
    pub stats_ttl: Duration,
    /// Connection caps, timeouts and the `Host` names accepted.
    pub conn: ConnLimits,
    /// Absolute lifetime of a session, however often it is used.
    pub session_max: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9380)),
            tls: None,
            geoip: GeoPaths::default(),
            login_limits: LoginLimits::default(),
            session_idle: Duration::from_secs(12 * 3600),
            store_connections: 4,
            stats_ttl: Duration::from_secs(5),
            conn: ConnLimits::default(),
            session_max: Duration::from_secs(12 * 3600),
        }
    }
}

/// PEM files for HTTPS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Login rate limits: failed attempts allowed per window, per client address and per user.
#[derive(Clone, Debug)]
pub struct LoginLimits {
    /// Failed attempts allowed from one address per window.
    pub per_ip: u32,
    /// Failed attempts allowed against one user name per window.
    pub per_user: u32,
    /// The window.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_ip: 10,
            per_user: 5,
            window: Duration::from_secs(300),
        }
    }
}

/// Start-up failure of the server; nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] palisade_store::StoreError),
    /// The runtime or thread could not be started.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    addr: SocketAddr,
    tls: bool,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL (`http://127.0.0.1:9380`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting, ends live feeds, and waits (at most a few seconds) for requests in
    /// flight.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // A forgotten handle must not leave a thread serving a stopped daemon's data.
        self.stop_and_join();
    }
}

/// Starts the server on its own thread: binds, opens `store_connections` store connections,
/// creates the first admin account if none exists (its one-time password is logged once),
/// pushes the stored allowlist to the daemon, then serves until [`ServerHandle::shutdown`].
///
/// `store_url` is a URL as [`palisade_store::open`] takes it (password already filled in).
pub fn spawn(
    cfg: ServerConfig,
    store_url: String,
    control: Arc<dyn ControlApi>,
    feed: FeedHub,
) -> Result<ServerHandle, ServerError> {
    let tls = match &cfg.tls {
        Some(files) => Some(tls::load(files)?),
        None => None,
    };
    let std_listener =
        std::net::TcpListener::bind(cfg.listen).map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    std_listener
        .set_nonblocking(true)
        .map_err(ServerError::Runtime)?;
    let addr = std_listener.local_addr().map_err(ServerError::Runtime)?;
    let pool = pool::StorePool::open(&store_url, cfg.store_connections.max(1))?;
    pool.with_sync(auth::bootstrap_admin)?;
    let allow = pool.with_sync(|s| s.allowlist())?;
    if !allow.is_empty() {
        if let Err(e) = control.set_allowlist(allow.iter().map(|a| a.net).collect()) {
            tracing::warn!(error = %e, "could not hand the stored allowlist to the daemon");
        }
    }
    let geo = GeoIp::open(&cfg.geoip);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("http")
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let secure = tls.is_some();
    let state = api::AppState::new(api::Inner {
        pool,
        control,
        feed,
        geo,
        auth: auth::AuthState::new(
            cfg.login_limits.clone(),
            cfg.session_idle,
            cfg.session_max,
            secure,
        ),
        stats: stats::StatsCache::new(cfg.stats_ttl),
        audit: audit::AuditDb::new(store_url.clone()),
        shutdown: stop_rx.clone(),
        fleet_feed: fleet::FeedCursor::default(),
    });
    let pump_state = state.clone();
    // The last reference to the state is dropped outside the runtime: a PostgreSQL client
    // may not be dropped inside it (its close blocks on a runtime of its own).
    let keep = state.clone();
    let app = api::router(state);
    let fd_limit = serve::raise_fd_limit();
    let cap = serve::connection_cap(cfg.conn.max_connections, fd_limit);
    let limits = cfg.conn.clone();
    let thread = std::thread::Builder::new()
        .name("http-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "http listener");
                        return;
                    }
                };
                tokio::spawn(fleet::pump(pump_state));
                serve::run(listener, tls, app, limits, cap, stop_rx).await;
            });
            runtime.shutdown_timeout(Duration::from_secs(3));
            drop(keep);
        })
        .map_err(ServerError::Runtime)?;
    tracing::debug!(?fd_limit, connections = cap, "http connection cap");
    tracing::info!(url = %format!("{}://{addr}", if secure { "https" } else { "http" }), "dashboard and API listening");
    Ok(ServerHandle {
        addr,
        tls: secure,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
