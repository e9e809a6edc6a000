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
//! - Login attempts are limited per client address (IPv6: per /64) and per user name. An
//!   attempt is *reserved* atomically before the (deliberately slow, memory-hungry) password
//!   hash runs, so concurrent guesses cannot slip past the count, and at most
//!   [`MAX_VERIFYING`] hashes run at once. A user name under attack does not lock its owner
//!   out: when the per-user limit is reached, an address that logged in as that user before,
//!   or has no failure in the window, still gets its attempt evaluated (the per-address limit
//!   always holds). So under attack from N addresses at most `per_user + N` guesses are
//!   evaluated per window (each address's first), never `N × per_ip`.
//! - A session ends after [`crate::ServerConfig::session_idle`] without use, after
//!   [`crate::ServerConfig::session_max`] in any case, and as soon as its user's password
//!   changes (checked against the store at most every few seconds).

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
/// Rate-limit buckets kept at most per kind (expired ones are swept first, then the oldest
/// is dropped: the table is never cleared at once).
const MAX_BUCKETS: usize = 100_000;
/// Password verifications running at once (argon2id takes ~19 MiB each).
pub const MAX_VERIFYING: usize = 2;
/// (user, address) pairs remembered as having logged in successfully.
const MAX_TRUSTED: usize = 4096;
/// How long a successful login makes its address trusted for that user.
const TRUSTED_FOR: Duration = Duration::from_secs(30 * 86_400);
/// How long a session's password check is reused before the store is asked again.
const SESSION_RECHECK: Duration = Duration::from_secs(5);
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

/// Largest argon2 memory a stored hash may ask for (blocks of 1 KiB): 256 MiB.
const MAX_VERIFY_BLOCKS: usize = 256 * 1024;

/// Like [`verify_password`], but hashing in `blocks`, a buffer the caller keeps and reuses:
/// the ~19 MiB of every check then live in one allocation per thread instead of fresh heap
/// blocks that fragment the allocator (which grew the peak RSS by hundreds of MiB under a
/// burst of logins).
fn verify_in(hash: &str, password: &str, blocks: &mut Vec<argon2::Block>) -> bool {
    let mut check = || -> Option<bool> {
        let h = PasswordHash::new(hash).ok()?;
        let params = argon2::Params::try_from(&h).ok()?;
        let alg = argon2::Algorithm::try_from(h.algorithm).ok()?;
        let version = match h.version {
            Some(v) => argon2::Version::try_from(v).ok()?,
            None => argon2::Version::default(),
        };
        let expected = h.hash?;
        let mut salt = [0u8; 64];
        let salt = h.salt?.decode_b64(&mut salt).ok()?;
        let n = params.block_count();
        if n > MAX_VERIFY_BLOCKS {
            return Some(false);
        }
        if blocks.len() < n {
            blocks.resize(n, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(alg, version, params)
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..n])
            .ok()?;
        let e = expected.as_bytes();
        Some(out.len() == e.len() && out.iter().zip(e).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0)
    };
    check().unwrap_or(false)
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
    /// SHA-256 of the user's password hash when the session started.
    pw: String,
    /// When `pw` was last compared with the store.
    checked: Instant,
}

/// A session found by its cookie whose password fingerprint is due for a check against the
/// store: call [`AuthState::confirm_session`] with the user's current password hash.
#[derive(Debug)]
pub struct SessionCheck {
    /// The session's principal.
    pub principal: Principal,
    /// Whether the store must be asked before trusting it.
    pub recheck: bool,
}

/// A token lookup result (name and scope, or unknown) and when it was made.
type CachedToken = (Option<(String, Scope)>, Instant);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    /// Failed attempts in the window, plus attempts reserved and not yet decided.
    failures: u32,
}

#[derive(Debug, Default)]
struct Buckets {
    ip: HashMap<IpAddr, Bucket>,
    user: HashMap<String, Bucket>,
    /// Addresses (keys) that logged in as a user, and when.
    trusted: HashMap<(String, IpAddr), Instant>,
}

/// Fetches a live bucket (resetting an expired one), making room first when the table is
/// full: expired buckets go, then the oldest one — never all at once.
fn bucket<'a, K: std::hash::Hash + Eq + Clone>(
    m: &'a mut HashMap<K, Bucket>,
    key: &K,
    now: Instant,
    w: Duration,
) -> &'a mut Bucket {
    if !m.contains_key(key) && m.len() >= MAX_BUCKETS {
        m.retain(|_, x| now.duration_since(x.start) < w);
        if m.len() >= MAX_BUCKETS {
            if let Some(k) = m
                .iter()
                .min_by_key(|(_, x)| x.start)
                .map(|(k, _)| k.clone())
            {
                m.remove(&k);
            }
        }
    }
    let b = m.entry(key.clone()).or_insert(Bucket {
        start: now,
        failures: 0,
    });
    if now.duration_since(b.start) >= w {
        *b = Bucket {
            start: now,
            failures: 0,
        };
    }
    b
}

/// A login attempt counted in advance; [`AuthState::finish`] settles it.
#[derive(Debug)]
pub struct Attempt {
    ip: IpAddr,
    user: String,
}

/// A password check waiting for a verifier thread.
type VerifyJob = (Option<String>, String, tokio::sync::oneshot::Sender<bool>);

/// [`MAX_VERIFYING`] long-lived threads that run the password hashes. Fixed threads, not the
/// runtime's blocking pool: each thread's allocator arena keeps the ~19 MiB argon2 block it
/// used, so the number of threads that ever hash bounds the memory, not only how many hash
/// at once.
#[derive(Debug)]
struct Verifier(Mutex<Option<std::sync::mpsc::SyncSender<VerifyJob>>>);

impl Verifier {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<VerifyJob>(MAX_VERIFYING);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..MAX_VERIFYING {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("login-verify-{i}"))
                .spawn(move || {
                    let mut blocks = Vec::new();
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((stored, password, reply)) = job else {
                            return;
                        };
                        let ok = match stored {
                            Some(h) => verify_in(&h, &password, &mut blocks),
                            None => {
                                let _ = verify_in(dummy_hash(), &password, &mut blocks);
                                false
                            }
                        };
                        let _ = reply.send(ok);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a login verifier thread");
            }
        }
        Verifier(Mutex::new(Some(tx)))
    }

    async fn run(&self, stored: Option<String>, password: String) -> bool {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let tx = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(tx) = tx else { return false };
        // Callers hold one of MAX_VERIFYING semaphore permits, so the queue (that long)
        // always has room.
        tx.try_send((stored, password, reply)).is_ok() && answer.await.unwrap_or(false)
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        // Closing the channel ends the threads.
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// In-memory authentication state: sessions, rate-limit buckets, token cache.
#[derive(Debug)]
pub struct AuthState {
    sessions: Mutex<HashMap<String, Session>>,
    buckets: Mutex<Buckets>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    limits: LoginLimits,
    idle: Duration,
    max_age: Duration,
    verifying: tokio::sync::Semaphore,
    verifier: Verifier,
    running: std::sync::atomic::AtomicUsize,
    running_max: std::sync::atomic::AtomicUsize,
    /// Whether cookies get `Secure` (served over TLS).
    pub secure: bool,
}

impl AuthState {
    /// Empty state.
    pub fn new(limits: LoginLimits, idle: Duration, max_age: Duration, secure: bool) -> Self {
        AuthState {
            sessions: Mutex::default(),
            buckets: Mutex::default(),
            tokens: Mutex::default(),
            limits,
            idle,
            max_age,
            verifying: tokio::sync::Semaphore::new(MAX_VERIFYING),
            verifier: Verifier::start(),
            running: Default::default(),
            running_max: Default::default(),
            secure,
        }
    }

    /// Reserves a login attempt for `ip` (counted per /64 for IPv6) and `user`, or refuses
    /// it. The reservation counts as a failure until [`AuthState::finish`] says otherwise, so
    /// concurrent attempts cannot pass the limit together.
    pub fn reserve(&self, ip: IpAddr, user: &str) -> Result<Attempt, ApiError> {
        let now = Instant::now();
        let w = self.limits.window;
        let key = crate::serve::address_key(ip);
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let ipb = *bucket(&mut b.ip, &key, now, w);
        if ipb.failures >= self.limits.per_ip {
            let age = now.duration_since(ipb.start);
            return Err(ApiError::RateLimited(w.saturating_sub(age).as_secs() + 1));
        }
        let userb = *bucket(&mut b.user, &user.to_owned(), now, w);
        if userb.failures >= self.limits.per_user {
            // The name is under attack. Its owner still gets through from an address that
            // logged in as them before, or that has not failed in this window.
            let trusted = b
                .trusted
                .get(&(user.to_owned(), key))
                .is_some_and(|t| now.duration_since(*t) < TRUSTED_FOR);
            if !trusted && ipb.failures > 0 {
                let age = now.duration_since(userb.start);
                return Err(ApiError::RateLimited(w.saturating_sub(age).as_secs() + 1));
            }
        }
        b.ip.get_mut(&key).expect("bucket just made").failures += 1;
        b.user.get_mut(user).expect("bucket just made").failures += 1;
        Ok(Attempt {
            ip: key,
            user: user.to_owned(),
        })
    }

    /// Settles a reserved attempt: a failure stays counted; a success gives the reservation
    /// back and trusts the address for this user. Earlier failures stay counted on both
    /// sides until their window ends: the owner logging in must not reopen the name to the
    /// guessers, nor one valid account reset guessing from its address.
    pub fn finish(&self, a: Attempt, ok: bool) {
        if !ok {
            return;
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(x) = b.ip.get_mut(&a.ip) {
            x.failures = x.failures.saturating_sub(1);
        }
        if let Some(x) = b.user.get_mut(&a.user) {
            x.failures = x.failures.saturating_sub(1);
        }
        if b.trusted.len() >= MAX_TRUSTED {
            b.trusted
                .retain(|_, t| now.duration_since(*t) < TRUSTED_FOR);
            if b.trusted.len() >= MAX_TRUSTED {
                if let Some(k) = b
                    .trusted
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                {
                    b.trusted.remove(&k);
                }
            }
        }
        b.trusted.insert((a.user, a.ip), now);
    }

    /// Runs a password check, at most [`MAX_VERIFYING`] at once (waiting for a turn).
    pub async fn verify(&self, stored: Option<String>, password: String) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let n = self.running.fetch_add(1, SeqCst) + 1;
        self.running_max.fetch_max(n, SeqCst);
        let r = self.verifier.run(stored, password).await;
        self.running.fetch_sub(1, SeqCst);
        r
    }

    /// The most password verifications that ever ran at once.
    pub fn verifications_peak(&self) -> usize {
        self.running_max.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts a session for `user`, whose stored password hash is `password_hash`; returns
    /// `(cookie value, csrf token)`.
    pub fn create_session(&self, user: &str, password_hash: &str) -> (String, String) {
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
                pw: sha256_hex(password_hash),
                checked: now,
            },
        );
        (id, csrf)
    }

    /// The session for a cookie value, refreshed; `None` if unknown, idle too long or past
    /// its absolute lifetime. `recheck` asks for [`AuthState::confirm_session`].
    pub fn session(&self, cookie: &str) -> Option<SessionCheck> {
        let key = sha256_hex(cookie);
        let now = Instant::now();
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let x = s.get_mut(&key)?;
        if now.duration_since(x.last_used) >= self.idle
            || now.duration_since(x.created) >= self.max_age
        {
            s.remove(&key);
            return None;
        }
        x.last_used = now;
        Some(SessionCheck {
            recheck: now.duration_since(x.checked) >= SESSION_RECHECK,
            principal: Principal {
                name: x.user.clone(),
                scope: Scope::Admin,
                csrf: Some(x.csrf.clone()),
                session: Some(key),
            },
        })
    }

    /// Compares a session's password fingerprint with the user's current password hash
    /// (`None`: the user is gone); a changed password ends the session.
    pub fn confirm_session(&self, key: &str, current: Option<&str>) -> bool {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(x) = s.get_mut(key) else {
            return false;
        };
        if current.is_some_and(|h| same(&sha256_hex(h), &x.pw)) {
            x.checked = Instant::now();
            return true;
        }
        s.remove(key);
        false
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
#[cfg(test)]
fn check_password(stored: Option<&str>, password: &str) -> bool {
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
        let mut blocks = Vec::new();
        assert!(verify_in(&h, "correct horse", &mut blocks));
        assert!(!verify_in(&h, "correct horsf", &mut blocks));
        assert!(!verify_in("$argon2id$garbage", "x", &mut blocks));
        assert_eq!(blocks.len(), argon2::Params::DEFAULT.block_count());
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
            Duration::from_secs(3600),
            true,
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let x = a.reserve(ip, "u").unwrap();
        let y = a.reserve(ip, "u").unwrap();
        // Reserved attempts count before they are settled.
        assert!(matches!(a.reserve(ip, "v"), Err(ApiError::RateLimited(_))));
        a.finish(x, false);
        a.finish(y, false);
        assert!(matches!(a.reserve(ip, "v"), Err(ApiError::RateLimited(_))));
        // IPv6 counts per /64.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let r = a.reserve(v6a, "w").unwrap();
        a.finish(r, false);
        let r = a.reserve(v6b, "w").unwrap();
        a.finish(r, false);
        assert!(a.reserve(v6a, "w").is_err());
        assert!(a.reserve("2001:db8:0:1::1".parse().unwrap(), "w").is_ok());

        let (id, csrf) = a.create_session("u", "$argon2id$h1");
        let p = a.session(&id).unwrap();
        assert!(!p.recheck);
        let p = p.principal;
        assert_eq!(p.csrf.as_deref(), Some(csrf.as_str()));
        assert!(a.session_cookie(&id).contains("Secure"));
        let key = p.session.clone().unwrap();
        assert!(a.confirm_session(&key, Some("$argon2id$h1")));
        a.end_session(&key);
        assert!(a.session(&id).is_none());
        // A changed password ends the session.
        let (id, _) = a.create_session("u", "$argon2id$h1");
        let key = a.session(&id).unwrap().principal.session.unwrap();
        assert!(!a.confirm_session(&key, Some("$argon2id$h2")));
        assert!(a.session(&id).is_none());
    }
}
