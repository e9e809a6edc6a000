//! "Come back later" (issue 18 item 2): when too many connections are in their TLS/WebSocket
//! handshake at once (a reconnect storm) or ingest is saturated, the server refuses NEW
//! connections at the upgrade with HTTP 503 and `Retry-After: SECONDS`, before any protocol
//! message, so it works for every protocol version; sessions already open are not touched.
//! The agent honours it with jitter and tries its other server URLs meanwhile
//! ([`crate::backoff`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::handshake::server::ErrorResponse;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// Default `[fleet] max_handshakes`: connections in their handshake at once.
pub const DEFAULT_MAX_HANDSHAKES: usize = 128;
/// The `Retry-After` the server sends.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);
/// What an agent assumes when a 503 has no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Counts connections between accept and the end of their upgrade.
pub struct Admission {
    handshakes: AtomicUsize,
    max_handshakes: usize,
    refused: AtomicUsize,
}

/// One connection in its handshake (decrements on drop).
pub struct Handshake(Arc<Admission>);

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// At most `max_handshakes` connections in their handshake (0 = no limit).
    pub fn new(max_handshakes: usize) -> Arc<Admission> {
        Arc::new(Admission {
            handshakes: AtomicUsize::new(0),
            max_handshakes,
            refused: AtomicUsize::new(0),
        })
    }
    /// A connection was accepted.
    pub fn enter(self: &Arc<Self>) -> Handshake {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        Handshake(self.clone())
    }
    /// Connections in their handshake now.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }
    /// Connections refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
    /// Whether a connection in its upgrade now must come back later (`ingest_saturated`:
    /// [`crate::ingest::Ingest::saturated`]); counts the refusal.
    pub fn must_wait(&self, ingest_saturated: bool) -> Option<Duration> {
        let storm = self.max_handshakes > 0 && self.handshakes() > self.max_handshakes;
        if storm || ingest_saturated {
            let n = self.refused.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(
                    handshakes = self.handshakes(),
                    ingest_saturated,
                    refused = n + 1,
                    "fleet: overloaded; asking new connections to come back later (HTTP 503)"
                );
            }
            return Some(RETRY_AFTER);
        }
        None
    }
}

/// The upgrade's refusal: 503 with `Retry-After`.
pub fn busy_response(after: Duration) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some("the server is busy; come back later".to_string()));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        "retry-after",
        HeaderValue::from_str(&after.as_secs().max(1).to_string())
            .expect("digits are a header value"),
    );
    r
}

/// A `Retry-After` header as the agent reads it: delay-seconds (1 to 300), else
/// [`DEFAULT_RETRY_AFTER`] (an HTTP date or garbage from a peer is not trusted).
pub fn parse_retry_after(v: Option<&str>) -> Duration {
    v.map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, |s| {
            Duration::from_secs(s.clamp(1, 300))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_parsed_and_bounded() {
        assert_eq!(parse_retry_after(Some("7")), Duration::from_secs(7));
        assert_eq!(parse_retry_after(Some(" 30 ")), Duration::from_secs(30));
        assert_eq!(parse_retry_after(Some("0")), Duration::from_secs(1));
        assert_eq!(parse_retry_after(Some("99999")), Duration::from_secs(300));
        assert_eq!(parse_retry_after(Some("-5")), DEFAULT_RETRY_AFTER);
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(
            parse_retry_after(Some("99999999999999999999")),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(parse_retry_after(None), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn over_the_limit_connections_are_told_to_wait() {
        let a = Admission::new(2);
        let h1 = a.enter();
        let h2 = a.enter();
        assert_eq!(a.must_wait(false), None, "2 in flight, limit 2");
        let h3 = a.enter();
        assert_eq!(a.must_wait(false), Some(RETRY_AFTER));
        drop(h3);
        assert_eq!(a.must_wait(false), None);
        assert_eq!(a.must_wait(true), Some(RETRY_AFTER), "ingest saturated");
        assert_eq!(a.refused(), 2);
        drop((h1, h2));
        assert_eq!(a.handshakes(), 0);
        // 0 = no limit.
        let u = Admission::new(0);
        let _hs: Vec<_> = (0..1000).map(|_| u.enter()).collect();
        assert_eq!(u.must_wait(false), None);
    }

    #[test]
    fn the_refusal_carries_503_and_retry_after() {
        let r = busy_response(Duration::from_secs(10));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "10");
        assert_eq!(
            parse_retry_after(r.headers()["retry-after"].to_str().ok()),
            Duration::from_secs(10)
        );
    }
}
