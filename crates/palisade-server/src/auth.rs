//! Authentication: accounts (argon2id password hashes), sessions (random cookie, server-side
//! state, CSRF token), API tokens (random, stored as SHA-256), and login rate limits.
//!
//! - A session cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` under TLS.
//!   Only its SHA-256 is kept in memory, so a memory dump does not hand out live sessions.
//! - Every state-changing request made with a session must carry the session's CSRF token
//!   in `X-CSRF-Token` (synchronizer token; the dashboard reads it from `/api/v1/auth/me`).
//!   Login itself only accepts `application/json`, which a cross-site form cannot send.
//! - API tokens (`Authorization: Bearer pal_…`) have scope `read` or `admin`; they carry no
//!   ambient authority, so they need no CSRF token.
//! - Login attempts are limited per client address and per user name; the limit is checked
//!   before the (deliberately slow) password hash runs.

use crate::error::ApiError;
use crate::LoginLimits;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use palisade_core::{Clock, SystemClock};
use palisade_store::{Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "palisade_session";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest password accepted for an account.
pub const MIN_PASSWORD: usize = 8;
/// Sessions kept at most (oldest dropped beyond).
const MAX_SESSIONS: usize = 10_000;
/// Rate-limit buckets kept at most (expired ones are swept first).
const MAX_BUCKETS: usize = 100_000;
/// How long a token lookup is reused before the store is asked again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);

/// `n` random bytes, URL-safe base64 without padding.
pub fn random_string(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random number generator is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(64);
    for b in d {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Hashes a password with argon2id (default parameters, random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a throwaway password, verified against when the user does not exist so that
/// unknown and known names take the same time.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password(&random_string(12)).unwrap_or_default())
}

/// A new API token and the hash to store: `(token, sha256_hex(token))`.
pub fn new_api_token() -> (String, String) {
    let t = format!("pal_{}", random_string(32));
    let h = sha256_hex(&t);
    (t, h)
}

/// Token scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET only.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    /// Parses `read` / `admin`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// Creates the first account when there is none: user `admin` with a random password,
/// written to the log this one time (it is never shown again; set another with
/// `palisade user add admin`).
pub fn bootstrap_admin(store: &mut dyn Store) -> Result<(), StoreError> {
    if store.user_count()? > 0 {
        return Ok(());
    }
    let password = random_string(15);
    let hash = hash_password(&password).map_err(StoreError::Corrupt)?;
    store.user_set("admin", &hash, SystemClock.now())?;
    tracing::warn!(
        user = "admin",
        password = %password,
        "no dashboard account existed: created one with this one-time password \
         (shown only now; change it with `palisade user add admin`)"
    );
    Ok(())
}

/// Who made a request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// User name, or `token:NAME`.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// The session's CSRF token (sessions only).
    pub csrf: Option<String>,
    /// Hash of the session id (sessions only; for logout).
    pub session: Option<String>,
}

#[derive(Debug)]
struct Session {
    user: String,
    csrf: String,
    last_used: Instant,
    created: Instant,
}

/// A token lookup result (name and scope, or unknown) and when it was made.
type CachedToken = (Option<(String, Scope)>, Instant);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    failures: u32,
}

/// In-memory authentication state: sessions, rate-limit buckets, token cache.
#[derive(Debug)]
pub struct AuthState {
    sessions: Mutex<HashMap<String, Session>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    limits: LoginLimits,
    idle: Duration,
    /// Whether cookies get `Secure` (served over TLS).
    pub secure: bool,
}

impl AuthState {
    /// Empty state.
    pub fn new(limits: LoginLimits, idle: Duration, secure: bool) -> Self {
        AuthState {
            sessions: Mutex::default(),
            buckets: Mutex::default(),
            tokens: Mutex::default(),
            limits,
            idle,
            secure,
        }
    }

    /// Refuses a login attempt early when the address or the user name is over its limit.
    pub fn check_limits(&self, ip: IpAddr, user: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let w = self.limits.window;
        for (key, max) in [
            (format!("ip:{ip}"), self.limits.per_ip),
            (format!("user:{user}"), self.limits.per_user),
        ] {
            if let Some(x) = b.get(&key) {
                let age = now.duration_since(x.start);
                if age < w && x.failures >= max {
                    return Err(ApiError::RateLimited((w - age).as_secs() + 1));
                }
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against the address and the user name.
    pub fn record_failure(&self, ip: IpAddr, user: &str) {
        let now = Instant::now();
        let w = self.limits.window;
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_BUCKETS {
            b.retain(|_, x| now.duration_since(x.start) < w);
            if b.len() >= MAX_BUCKETS {
                b.clear();
            }
        }
        for key in [format!("ip:{ip}"), format!("user:{user}")] {
            let x = b.entry(key).or_insert(Bucket {
                start: now,
                failures: 0,
            });
            if now.duration_since(x.start) >= w {
                *x = Bucket {
                    start: now,
                    failures: 0,
                };
            }
            x.failures += 1;
        }
    }

    /// Clears the user's failures after a successful login (the address keeps its count, so
    /// one valid account cannot be used to reset guessing against others).
    pub fn record_success(&self, user: &str) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.remove(&format!("user:{user}"));
    }

    /// Starts a session; returns `(cookie value, csrf token)`.
    pub fn create_session(&self, user: &str) -> (String, String) {
        let id = random_string(32);
        let csrf = random_string(32);
        let now = Instant::now();
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() >= MAX_SESSIONS {
            let idle = self.idle;
            s.retain(|_, x| now.duration_since(x.last_used) < idle);
            if s.len() >= MAX_SESSIONS {
                if let Some(oldest) = s
                    .iter()
                    .min_by_key(|(_, x)| x.created)
                    .map(|(k, _)| k.clone())
                {
                    s.remove(&oldest);
                }
            }
        }
        s.insert(
            sha256_hex(&id),
            Session {
                user: user.to_owned(),
                csrf: csrf.clone(),
                last_used: now,
                created: now,
            },
        );
        (id, csrf)
    }

    /// The session for a cookie value, refreshed; `None` if unknown or idle too long.
    pub fn session(&self, cookie: &str) -> Option<Principal> {
        let key = sha256_hex(cookie);
        let now = Instant::now();
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let x = s.get_mut(&key)?;
        if now.duration_since(x.last_used) >= self.idle {
            s.remove(&key);
            return None;
        }
        x.last_used = now;
        Some(Principal {
            name: x.user.clone(),
            scope: Scope::Admin,
            csrf: Some(x.csrf.clone()),
            session: Some(key),
        })
    }

    /// Ends a session (by its hashed id).
    pub fn end_session(&self, key: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// A cached token lookup (`Some(None)`: known bad), or `None` if not cached.
    pub(crate) fn cached_token(&self, hash: &str) -> Option<Option<(String, Scope)>> {
        let t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        t.get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(v, _)| v.clone())
    }

    /// Remembers a token lookup.
    pub(crate) fn cache_token(&self, hash: String, v: Option<(String, Scope)>) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= 10_000 {
            t.clear();
        }
        t.insert(hash, (v, Instant::now()));
    }

    /// `Set-Cookie` value for a new session.
    pub fn session_cookie(&self, id: &str) -> String {
        format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            self.idle.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// Constant-time string comparison (for CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs a password check without revealing whether the user exists.
pub(crate) fn check_password(stored: Option<&str>, password: &str) -> bool {
    match stored {
        Some(h) => verify_password(h, password),
        None => {
            let _ = verify_password(dummy_hash(), password);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!check_password(None, "x"));
        let (t, th) = new_api_token();
        assert!(t.starts_with("pal_") && t.len() > 40);
        assert_eq!(th, sha256_hex(&t));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("a", "ab"));
    }

    #[test]
    fn limits_and_sessions() {
        let a = AuthState::new(
            LoginLimits {
                per_ip: 2,
                per_user: 5,
                window: Duration::from_secs(60),
            },
            Duration::from_secs(60),
            true,
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        a.check_limits(ip, "u").unwrap();
        a.record_failure(ip, "u");
        a.record_failure(ip, "u");
        assert!(matches!(
            a.check_limits(ip, "v"),
            Err(ApiError::RateLimited(_))
        ));
        let (id, csrf) = a.create_session("u");
        let p = a.session(&id).unwrap();
        assert_eq!(p.csrf.as_deref(), Some(csrf.as_str()));
        assert!(a.session_cookie(&id).contains("Secure"));
        a.end_session(p.session.as_deref().unwrap());
        assert!(a.session(&id).is_none());
    }
}
