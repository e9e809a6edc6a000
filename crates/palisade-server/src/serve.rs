//! The accept loop: bounded connections, timeouts, and the descriptor budget.
//!
//! Idle connections must never blind the daemon. Every descriptor the server holds is one
//! the responders (which spawn processes and open netlink sockets) and the store cannot use,
//! so:
//!
//! - the soft `RLIMIT_NOFILE` is raised to the hard limit at start ([`raise_fd_limit`]);
//! - at most [`Limits::max_connections`] connections are open at once, and never more than
//!   the descriptor limit minus [`FD_RESERVE`] (kept for responders, the store, sources and
//!   the control socket); a connection over the cap is closed at once;
//! - at most [`Limits::per_address`] connections per client address (IPv6: per /64);
//! - a TLS handshake must finish within [`Limits::handshake`];
//! - a request header must arrive within [`Limits::header`] of the connection opening or
//!   of the previous answer, so an idle keep-alive connection is closed after that time too;
//! - a handler must produce its answer head within [`Limits::request`] (this covers slow
//!   request bodies; the live feed's body streams afterwards, bounded by its own keep-alive).
//!
//! The `Host` header is checked too (DNS rebinding: a hostile page whose name resolves to the
//! server would otherwise be same-origin with the API): IP literals, `localhost` and the names
//! in [`Limits::allowed_hosts`] are accepted, anything else gets `421 Misdirected Request`.

use crate::api::Peer;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls;
use tower::ServiceExt as _;

/// Descriptors kept free for everything but HTTP connections (responder processes and their
/// pipes, netlink sockets, store files, log sources, the control socket).
pub const FD_RESERVE: u64 = 128;

/// Connection limits of the HTTP server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once (lowered further to fit the descriptor limit).
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64).
    pub per_address: usize,
    /// Longest wait for a complete request header, on a new or an idle connection.
    pub header: Duration,
    /// Longest a TLS handshake may take.
    pub handshake: Duration,
    /// Longest a handler may take to start its answer (reading the body included).
    pub request: Duration,
    /// Host names accepted in the `Host` header besides IP literals and `localhost`
    /// (`[server] allowed_hosts`).
    pub allowed_hosts: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            per_address: 32,
            header: Duration::from_secs(15),
            handshake: Duration::from_secs(10),
            request: Duration::from_secs(60),
            allowed_hosts: Vec::new(),
        }
    }
}

/// Raises the soft descriptor limit to the hard one; returns the soft limit now in force
/// (`None` when unlimited or unknown).
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        let wanted = rustix::process::Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => l.current = l.maximum,
            Err(e) => tracing::debug!(error = %e, "could not raise RLIMIT_NOFILE"),
        }
    }
    l.current
}

/// The connection cap for a descriptor limit: the configured one, but never more than the
/// limit minus [`FD_RESERVE`] (and at least 4, so the dashboard stays reachable).
pub fn connection_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let budget = fd_limit
        .map(|l| l.saturating_sub(FD_RESERVE).max(4))
        .unwrap_or(u64::MAX);
    configured
        .min(usize::try_from(budget).unwrap_or(usize::MAX))
        .max(1)
}

/// The key a client address is counted under: IPv4 and IPv4-mapped addresses as
/// themselves, other IPv6 addresses by their /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match palisade_core::canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let b = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(b.into())
        }
        v4 => v4,
    }
}

/// Whether a `Host` header value names this server: an IP literal (with or without port),
/// `localhost`, or one of `allowed` (case-insensitive, port ignored).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => return ip.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| {
            let a = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
            a.strip_suffix('.').unwrap_or(a).eq_ignore_ascii_case(name)
        })
}

/// Open connections per address key.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// A slot of an open connection; frees itself when dropped.
struct Slot {
    map: Arc<PerAddress>,
    key: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `stop` turns true, then
/// lets connections finish their current request for a few seconds.
pub(crate) async fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    cap: usize,
    mut stop: watch::Receiver<bool>,
) {
    let global = Arc::new(Semaphore::new(cap));
    let per = Arc::new(PerAddress::default());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, most likely: back off rather than spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(permit) = global.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: server at its connection cap");
            continue; // dropping the stream closes it
        };
        let key = address_key(peer.ip());
        {
            let mut m = per.0.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(key).or_insert(0);
            if *n >= limits.per_address {
                tracing::debug!(%peer, "connection refused: too many from this address");
                continue;
            }
            *n += 1;
        }
        let slot = Slot {
            map: per.clone(),
            key,
            _permit: permit,
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        let limits = limits.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            match acceptor {
                Some(acc) => match tokio::time::timeout(limits.handshake, acc.accept(stream)).await
                {
                    Ok(Ok(tls)) => serve_conn(tls, peer, app, &limits, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => serve_conn(stream, peer, app, &limits, stop).await,
            }
        });
    }
    // Let connections finish: wait until every slot is back, at most a few seconds.
    let total = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(3), global.acquire_many(total)).await;
}

async fn serve_conn<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let request_timeout = limits.request;
    let allowed: Arc<[String]> = limits.allowed_hosts.clone().into();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(Peer(peer)));
        let app = app.clone();
        let host_ok = req
            .headers()
            .get(hyper::header::HOST)
            .map(|h| h.to_str().is_ok_and(|h| host_allowed(h, &allowed)))
            .unwrap_or(true);
        async move {
            if !host_ok {
                return Ok(axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::MISDIRECTED_REQUEST,
                    "unknown Host: add it to [server] allowed_hosts",
                )));
            }
            let req = req.map(axum::body::Body::new);
            match tokio::time::timeout(request_timeout, app.oneshot(req)).await {
                Ok(r) => r,
                Err(_) => Ok(axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "request timed out",
                ))),
            }
        }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let conn = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_keys() {
        assert_eq!(connection_cap(512, Some(256)), 128);
        assert_eq!(connection_cap(512, Some(1 << 20)), 512);
        assert_eq!(connection_cap(512, Some(10)), 4);
        assert_eq!(connection_cap(512, None), 512);
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(
            address_key(a),
            address_key("2001:db8:1:3::1".parse().unwrap())
        );
        let m: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(m), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn hosts() {
        let allowed = vec!["palisade.example.org".to_owned()];
        for ok in [
            "127.0.0.1:9380",
            "127.0.0.1",
            "[::1]:9380",
            "[2001:db8::1]",
            "localhost:9380",
            "LOCALHOST",
            "192.0.2.4:443",
            "Palisade.Example.org",
            "palisade.example.org.:8443",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9380",
            "127.0.0.1.evil.example",
            "[evil]",
            "[::1",
            "localhost.evil.example",
            "",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }
}
