//! Routes, the authentication middleware, and the request handlers of `/api/v1`.

use crate::assets;
use crate::auth::{self, AuthState, Principal, Scope, CSRF_HEADER, SESSION_COOKIE};
use crate::control::{ControlApi, FeedHub};
use crate::error::{ApiError, ErrorBody};
use crate::geo::{GeoInfo, GeoIp};
use crate::pool::{StorePool, LATENCY_BUCKETS};
use crate::stats::{self, Cached, Range, StatsCache};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use ipnet::IpNet;
use palisade_core::{Allowlist, Timestamp};
use palisade_store::{DecisionQuery, EventQuery, StoredDecision, StoredEvent};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// Largest request body accepted, in bytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Largest page of events or decisions.
const MAX_PAGE: u32 = 1000;
/// Latest events shown on the IP page (older ones are paged through `/events`).
const IP_RECENT_EVENTS: u32 = 50;

/// Everything handlers share.
pub(crate) struct Inner {
    pub pool: StorePool,
    pub control: Arc<dyn ControlApi>,
    pub feed: FeedHub,
    pub geo: GeoIp,
    pub auth: AuthState,
    pub stats: StatsCache,
    pub audit: crate::audit::AuditDb,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The live feed's position in the fleet tables.
    pub fleet_feed: crate::fleet::FeedCursor,
}

/// Cheap-to-clone handle on [`Inner`].
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

impl AppState {
    pub(crate) fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The client's address (inserted as connect info by [`crate::serve`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub SocketAddr);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge;
        }
        ApiError::BadRequest(r.body_text())
    }
}
impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// The whole application.
pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/events", get(events))
        .route("/decisions", get(decisions).post(ban))
        .route("/decisions/{id}", delete(delete_decision))
        .route("/decisions/unban", post(unban))
        .route("/ips/{ip}", get(ip_detail))
        .route("/stats", get(stats_handler))
        .route("/allowlist", get(allowlist).post(allowlist_add))
        .route("/allowlist/{id}", delete(allowlist_delete))
        .route("/jails", get(jails))
        .route("/meta", get(meta))
        .route("/feed", get(feed))
        .route("/audit/findings", get(crate::audit::findings))
        .route("/audit/events", get(crate::audit::events))
        .route("/audit/runs", get(crate::audit::runs))
        .route("/fleet/agents", get(crate::fleet::agents))
        .route("/fleet/agents/{name}/revoke", post(crate::fleet::revoke))
        .route("/fleet/decisions", get(crate::fleet::decisions))
        .route("/fleet/block", post(crate::fleet::block))
        .route("/fleet/overview", get(crate::fleet::overview))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    let api = protected
        .route("/auth/login", post(login))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::NotFound });
    let metrics_route = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .nest("/api/v1", api)
        .merge(metrics_route)
        .fallback(static_file)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every answer carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/") || req.uri().path() == "/metrics";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Who is calling: a bearer token, else a session cookie.
async fn principal(st: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let tok = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthenticated)?;
        let hash = auth::sha256_hex(tok);
        let found = match st.auth.cached_token(&hash) {
            Some(v) => v,
            None => {
                let h = hash.clone();
                let rec = st.pool.run(move |s| s.token_by_hash(&h)).await?;
                let v = rec.and_then(|r| Scope::parse(&r.scope).map(|sc| (r.name, sc)));
                st.auth.cache_token(hash, v.clone());
                v
            }
        };
        return Ok(found.map(|(name, scope)| Principal {
            name: format!("token:{name}"),
            scope,
            csrf: None,
            session: None,
        }));
    }
    let Some(found) = cookie(headers, SESSION_COOKIE).and_then(|c| st.auth.session(c)) else {
        return Ok(None);
    };
    if found.recheck {
        // A password change (or a deleted account) ends the session.
        let u = found.principal.name.clone();
        let current = st.pool.run(move |s| s.user(&u)).await?;
        let key = found.principal.session.as_deref().unwrap_or_default();
        if !st
            .auth
            .confirm_session(key, current.as_ref().map(|r| r.password_hash.as_str()))
        {
            return Ok(None);
        }
    }
    Ok(Some(found.principal))
}

/// Authentication and authorisation for every protected route.
async fn require_auth(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let p = principal(&st, req.headers())
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes {
        if p.scope != Scope::Admin {
            return Err(ApiError::Forbidden("this token is read-only"));
        }
        if let Some(csrf) = &p.csrf {
            let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|s| auth::same(s, csrf)) {
                return Err(ApiError::Forbidden(
                    "missing or wrong CSRF token (send X-CSRF-Token from /api/v1/auth/me)",
                ));
            }
        }
    }
    req.extensions_mut().insert(p);
    Ok(next.run(req).await)
}

// ---------------------------------------------------------------------------------------
// DTOs

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the store and the daemon answer, else `degraded`.
    pub status: &'static str,
    /// Palisade version.
    pub version: &'static str,
    /// Whether the store answered.
    pub store: bool,
    /// Whether the daemon answered a status request (authenticated callers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<bool>,
    /// The daemon's counters, among them the error counters (`responder_errors`,
    /// `store_errors`, `source_errors`, `filter_errors`, `jail_errors`); authenticated
    /// callers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub counters: Option<palisade_proto::Counters>,
    /// Log sources and their state (`path`, `state`, `lines`, `last_line`); authenticated
    /// callers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub sources: Option<Vec<palisade_proto::SourceStatus>>,
    /// Each responder's health (`name`, `ok`, `last_error`, `failures`); authenticated
    /// callers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub responders: Option<Vec<palisade_proto::ResponderHealth>>,
}

/// Login form.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// The caller.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// User name (`token:NAME` for API tokens).
    pub user: String,
    /// `read` or `admin`.
    #[schema(value_type = String)]
    pub scope: Scope,
    /// Token to send as `X-CSRF-Token` with state changes (sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// A stored event.
#[derive(Serialize, ToSchema)]
pub struct EventDto {
    /// Id (cursor).
    pub id: i64,
    /// Event time.
    pub time: String,
    /// Jail.
    pub jail: String,
    /// Address.
    pub ip: String,
    /// Filter.
    pub filter: String,
    /// Rule.
    pub rule: String,
    /// Counts as a failure.
    pub failure: bool,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Captured fields.
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The log line (kept for a sample of events only; empty otherwise).
    pub evidence: String,
    /// The fleet agent it came from (null = this host).
    pub host: Option<String>,
}

impl From<palisade_store::fleet::views::HostEvent> for EventDto {
    fn from(h: palisade_store::fleet::views::HostEvent) -> Self {
        let mut d = EventDto::from(h.stored);
        d.host = h.host;
        d
    }
}

impl From<StoredEvent> for EventDto {
    fn from(s: StoredEvent) -> Self {
        let e = s.event;
        EventDto {
            host: None,
            id: s.id,
            time: e.time.to_string(),
            jail: s.jail,
            ip: e.ip.to_string(),
            filter: e.filter.to_string(),
            rule: e.rule.to_string(),
            failure: e.failure,
            user: e.user.map(String::from),
            fields: e
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(&**v)))
                .collect(),
            evidence: e.evidence.into(),
        }
    }
}

/// A page of events, newest first.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Events.
    pub items: Vec<EventDto>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// Event filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only this address.
    pub ip: Option<String>,
    /// Only this host: a fleet agent's name, or `@local` for this host's own events.
    pub host: Option<String>,
    /// Only this jail.
    pub jail: Option<String>,
    /// Only at or after (RFC 3339).
    pub since: Option<String>,
    /// Only before (RFC 3339).
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A decision.
#[derive(Serialize, ToSchema)]
pub struct DecisionDto {
    /// Id.
    pub id: i64,
    /// Address or network.
    pub target: String,
    /// Jail (`manual` for operator bans).
    pub jail: String,
    /// `jail`, `recidive`, `manual`, `fail2ban`, `fleet`.
    pub origin: String,
    /// Reason.
    pub reason: String,
    /// Created.
    pub created: String,
    /// Ends (absent = permanent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Dry run: recorded, not enforced.
    pub simulated: bool,
    /// Escalation level.
    pub level: u32,
    /// `active`, `expired`, `revoked`.
    pub status: String,
    /// In force now.
    pub in_force: bool,
    /// The host it applies to (null = this host; this table holds only this host's).
    pub host: Option<String>,
}

fn decision_dto(s: &StoredDecision, now: Timestamp) -> DecisionDto {
    let d = &s.decision;
    let status = serde_json::to_value(s.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    DecisionDto {
        id: d.id,
        target: d.target.to_string(),
        jail: d.jail.clone(),
        origin: d.origin.as_str().to_owned(),
        reason: d.reason.clone(),
        created: d.created.to_string(),
        expires: d.expires.map(|t| t.to_string()),
        simulated: d.simulated,
        level: d.level,
        in_force: s.status == palisade_store::DecisionStatus::Active && d.active_at(now),
        status,
        host: None,
    }
}

/// Decisions, newest first.
#[derive(Serialize, ToSchema)]
pub struct DecisionList {
    /// Decisions.
    pub items: Vec<DecisionDto>,
}

/// Decision filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionParams {
    /// Only decisions covering this address or network.
    pub ip: Option<String>,
    /// Only this host's: `@local` (every decision here is this host's own) or a fleet
    /// agent's name (none here: an agent's bans are in `/api/v1/fleet/decisions?host=`).
    pub host: Option<String>,
    /// Only this jail.
    pub jail: Option<String>,
    /// Only this origin.
    pub origin: Option<String>,
    /// `active` (default: in force now) or `all`.
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A ban to take.
#[derive(Deserialize, ToSchema)]
pub struct BanRequest {
    /// Address or CIDR network.
    pub target: String,
    /// Length (`30m`, `1h`, `2d`, `1w`, or seconds); permanent if absent.
    pub duration: Option<String>,
    /// Reason recorded with the ban.
    pub reason: Option<String>,
}

/// Bans to lift.
#[derive(Deserialize, ToSchema)]
pub struct UnbanRequest {
    /// Address or CIDR network.
    pub target: String,
}

/// What the daemon answered.
#[derive(Serialize, ToSchema)]
pub struct ControlAnswer {
    /// The daemon's payload (the decision taken, or `{"lifted": n}`).
    #[schema(value_type = Object)]
    pub result: ControlResult,
}

/// What the daemon did.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ControlResult {
    /// The decision taken.
    Banned(palisade_core::Decision),
    /// Bans lifted.
    Lifted {
        /// How many.
        lifted: u64,
    },
}

/// Everything about one address.
#[derive(Serialize, ToSchema)]
pub struct IpDetail {
    /// The address.
    pub ip: String,
    /// Where it is (absent without GeoIP or when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoInfo>,
    /// What Palisade remembers (absent if never seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryDto>,
    /// Events per jail (all time), most first.
    pub jails: Vec<JailEvents>,
    /// Events per hour over the last 30 days, oldest first; hours without events are left
    /// out.
    pub timeline: Vec<TimelinePoint>,
    /// Decisions covering it, newest first (at most 100).
    pub decisions: Vec<DecisionDto>,
    /// The ban in force, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_ban: Option<DecisionDto>,
    /// Its latest events, newest first (at most 50).
    pub recent_events: Vec<EventDto>,
    /// When it has older events: pass as `cursor` to `/api/v1/events?ip=…` for the next
    /// (older) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_events_cursor: Option<i64>,
}

/// Address history.
#[derive(Serialize, ToSchema)]
pub struct HistoryDto {
    /// First seen.
    pub first_seen: String,
    /// Last seen.
    pub last_seen: String,
    /// Failures.
    pub failures: u64,
    /// Bans received.
    pub times_banned: u64,
    /// Events seen (all time; exact after retention removed old events).
    pub events: u64,
}

/// Events of one address in one jail.
#[derive(Serialize, ToSchema)]
pub struct JailEvents {
    /// Jail.
    pub jail: String,
    /// Events.
    pub events: u64,
}

/// Events of one address in one hour.
#[derive(Serialize, ToSchema)]
pub struct TimelinePoint {
    /// Hour start.
    pub t: String,
    /// Events.
    pub events: u64,
}

/// Stats parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// `24h` (default, hourly), `7d` (hourly) or `30d` (daily).
    pub range: Option<String>,
}

/// An allowlist entry.
#[derive(Serialize, ToSchema)]
pub struct AllowDto {
    /// Id.
    pub id: i64,
    /// Network.
    pub net: String,
    /// Comment.
    pub comment: String,
    /// Added.
    pub created: String,
}

/// Allowlist entries kept in the database.
#[derive(Serialize, ToSchema)]
pub struct AllowList {
    /// Entries, oldest first.
    pub items: Vec<AllowDto>,
    /// Whether the running daemon has these entries (false: it could not be told).
    pub daemon_updated: bool,
}

/// A new allowlist entry.
#[derive(Deserialize, ToSchema)]
pub struct AllowRequest {
    /// Address or CIDR network.
    pub net: String,
    /// Free text.
    #[serde(default)]
    pub comment: String,
}

/// Jails as the daemon reports them.
#[derive(Serialize, ToSchema)]
pub struct JailsDto {
    /// Per-jail counters (`name`, `failures`, `detections`, `tracked`, `evicted`).
    #[schema(value_type = Vec<Object>)]
    pub jails: Vec<palisade_proto::JailStatus>,
    /// Daemon-wide counters.
    #[schema(value_type = Object)]
    pub counters: palisade_proto::Counters,
    /// Bans in force.
    pub active_bans: u64,
    /// Log lines read per second.
    pub lines_per_sec: f64,
    /// Each log input: `path`, `state` (`ok`, `missing`, `unreadable`, `rotated`,
    /// `stopped`), `lines`, `last_line`.
    #[schema(value_type = Vec<Object>)]
    pub sources: Vec<palisade_proto::SourceStatus>,
    /// Each responder: `name`, `ok`, `last_error`, `failures`.
    #[schema(value_type = Vec<Object>)]
    pub responders: Vec<palisade_proto::ResponderHealth>,
    /// The store: `kind`, `ok`, `failures`, `last_error`.
    #[schema(value_type = Object)]
    pub store: palisade_proto::StoreHealth,
}

/// Server facts for the dashboard.
#[derive(Serialize, ToSchema)]
pub struct MetaDto {
    /// Palisade version.
    pub version: &'static str,
    /// GeoIP databases loaded: kind (`country`, `city`, `asn`) and database type.
    pub geoip: Vec<(String, String)>,
    /// Attribution required by the GeoIP data licence, to display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geoip_attribution: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Handlers

/// Liveness and store reachability; needs no authentication. An authenticated caller (the
/// dashboard's health strip) also gets the daemon's state: whether it answers, its error
/// counters and its sources.
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, body = Health)))]
pub(crate) async fn health(State(st): State<AppState>, headers: HeaderMap) -> Json<Health> {
    let store = st.pool.run(|s| s.schema_version()).await.is_ok();
    let mut h = Health {
        status: if store { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        store,
        daemon: None,
        counters: None,
        sources: None,
        responders: None,
    };
    if matches!(principal(&st, &headers).await, Ok(Some(_))) {
        let c = st.control.clone();
        let status = match tokio::task::spawn_blocking(move || c.status()).await {
            Ok(Ok(v)) => Some(v),
            _ => None,
        };
        h.daemon = Some(status.is_some());
        if let Some(s) = status {
            h.counters = Some(s.counters);
            h.sources = Some(s.sources);
            h.responders = Some(s.responders);
        } else {
            h.status = "degraded";
        }
    }
    Json(h)
}

/// Logs in; sets the session cookie. Limited per client address and per user name.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Me), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub(crate) async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let ip = palisade_core::canonical_ip(peer.0.ip());
    let user: String = req.username.chars().take(128).collect();
    let attempt = st.auth.reserve(ip, &user)?;
    let u = user.clone();
    let rec = st.pool.run(move |s| s.user(&u)).await?;
    let hash = rec.map(|r| r.password_hash);
    let ok = st.auth.verify(hash.clone(), req.password).await;
    st.auth.finish(attempt, ok);
    let shown = palisade_core::escape_untrusted(&user);
    let Some(hash) = hash.filter(|_| ok) else {
        tracing::warn!(%ip, user = %shown, "dashboard login failed");
        return Err(ApiError::BadLogin);
    };
    let u = user.clone();
    st.pool
        .run(move |s| s.user_logged_in(&u, stats::now()))
        .await?;
    let (id, csrf) = st.auth.create_session(&user, &hash);
    tracing::info!(%ip, user = %shown, "dashboard login");
    let mut resp = Json(Me {
        user,
        scope: Scope::Admin,
        csrf_token: Some(csrf),
    })
    .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&st.auth.session_cookie(&id))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

/// Ends the session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = [])))]
pub(crate) async fn logout(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Response {
    if let Some(k) = &p.session {
        st.auth.end_session(k);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&st.auth.clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The caller, and the CSRF token of its session.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn me(Extension(p): Extension<Principal>) -> Json<Me> {
    Json(Me {
        user: p.name,
        scope: p.scope,
        csrf_token: p.csrf,
    })
}

fn parse_ip(s: &str) -> Result<IpAddr, ApiError> {
    s.trim()
        .parse::<IpAddr>()
        .map(palisade_core::canonical_ip)
        .map_err(|_| ApiError::BadRequest(format!("{s:?} is not an IP address")))
}

fn parse_net(s: &str) -> Result<IpNet, ApiError> {
    Allowlist::parse_entry(s)
        .ok_or_else(|| ApiError::BadRequest(format!("{s:?} is not an IP address or network")))
}

fn parse_time(s: &str, what: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(s)
        .map_err(|e| ApiError::BadRequest(format!("{what}: {s:?} is not RFC 3339 ({e})")))
}

/// Parses `90`, `30s`, `10m`, `1h30m`, `2d`, `1w`.
pub(crate) fn parse_duration(s: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::BadRequest(format!("duration {s:?}: write e.g. 30m, 1h, 2d, 1w"));
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let (mut total, mut num) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Events, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventParams),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn events(
    State(st): State<AppState>,
    q: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let host = crate::fleet::parse_host(q.host.as_deref())?;
    let query = EventQuery {
        ip: q.ip.as_deref().map(parse_ip).transpose()?,
        jail: q.jail.filter(|j| !j.is_empty()),
        since: q
            .since
            .as_deref()
            .map(|s| parse_time(s, "since"))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|s| parse_time(s, "until"))
            .transpose()?,
        before_id: q.cursor,
        limit: Some(limit + 1),
    };
    let mut rows = st
        .pool
        .run(move |s| s.fleet_views().host_events(&query, host.as_ref()))
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|e| e.stored.id)
    } else {
        None
    };
    Ok(Json(EventPage {
        items: rows.into_iter().map(EventDto::from).collect(),
        next_cursor,
    }))
}

/// Decisions, newest first.
#[utoipa::path(get, path = "/api/v1/decisions", tag = "decisions", params(DecisionParams),
    responses((status = 200, body = DecisionList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn decisions(
    State(st): State<AppState>,
    q: Result<Query<DecisionParams>, QueryRejection>,
) -> Result<Json<DecisionList>, ApiError> {
    let Query(q) = q?;
    let now = stats::now();
    if let Some(palisade_store::fleet::views::HostFilter::Agent(_)) =
        crate::fleet::parse_host(q.host.as_deref())?
    {
        return Ok(Json(DecisionList { items: Vec::new() }));
    }
    let active = match q.status.as_deref().unwrap_or("active") {
        "active" => true,
        "all" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "status {other:?}: expected active or all"
            )))
        }
    };
    let query = DecisionQuery {
        target: q.ip.as_deref().map(parse_net).transpose()?,
        jail: q.jail.filter(|j| !j.is_empty()),
        origin: q
            .origin
            .as_deref()
            .filter(|o| !o.is_empty())
            .map(|o| o.parse().map_err(ApiError::BadRequest))
            .transpose()?,
        active_at: active.then_some(now),
        limit: Some(q.limit.unwrap_or(100).clamp(1, MAX_PAGE)),
    };
    let rows = st.pool.run(move |s| s.decisions(&query)).await?;
    Ok(Json(DecisionList {
        items: rows.iter().map(|d| decision_dto(d, now)).collect(),
    }))
}

async fn control_call<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&dyn ControlApi) -> Result<T, crate::ControlError> + Send + 'static,
) -> Result<T, ApiError> {
    let c = st.control.clone();
    let r = tokio::task::spawn_blocking(move || f(c.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    st.stats.clear();
    Ok(r)
}

/// Bans an address or network through the daemon.
#[utoipa::path(post, path = "/api/v1/decisions", tag = "decisions", request_body = BanRequest,
    responses((status = 201, body = ControlAnswer), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn ban(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<BanRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ControlAnswer>), ApiError> {
    let Json(req) = body?;
    let target = parse_net(&req.target)?;
    let secs = req
        .duration
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(parse_duration)
        .transpose()?;
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("manual ban by {}", p.name));
    let reason: String = reason.chars().take(256).collect();
    tracing::info!(user = %p.name, %target, "ban requested over the API");
    let d = control_call(&st, move |c| {
        c.ban(target, secs.map(Duration::from_secs), &reason)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ControlAnswer {
            result: ControlResult::Banned(d),
        }),
    ))
}

/// Lifts every ban of the decision's target.
#[utoipa::path(delete, path = "/api/v1/decisions/{id}", tag = "decisions",
    params(("id" = i64, Path, description = "Decision id")),
    responses((status = 200, body = ControlAnswer), (status = 404, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn delete_decision(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ControlAnswer>, ApiError> {
    let Path(id) = id?;
    let d = st
        .pool
        .run(move |s| s.decision(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    let target = d.decision.target;
    tracing::info!(user = %p.name, %target, "unban requested over the API");
    let lifted = control_call(&st, move |c| c.unban(target)).await?;
    Ok(Json(ControlAnswer {
        result: ControlResult::Lifted { lifted },
    }))
}

/// Lifts the bans of an address or network.
#[utoipa::path(post, path = "/api/v1/decisions/unban", tag = "decisions",
    request_body = UnbanRequest,
    responses((status = 200, body = ControlAnswer), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn unban(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<UnbanRequest>, JsonRejection>,
) -> Result<Json<ControlAnswer>, ApiError> {
    let Json(req) = body?;
    let target = parse_net(&req.target)?;
    tracing::info!(user = %p.name, %target, "unban requested over the API");
    let lifted = control_call(&st, move |c| c.unban(target)).await?;
    Ok(Json(ControlAnswer {
        result: ControlResult::Lifted { lifted },
    }))
}

/// Everything about one address: geolocation, history, jails, timeline, bans, events.
///
/// The answer is bounded whatever the address's activity: per-jail counts and the hourly
/// timeline come from per-address rollups, and only the latest 50 events are included —
/// older ones are paged through `/api/v1/events?ip=…&cursor=` starting at
/// `recent_events_cursor`.
#[utoipa::path(get, path = "/api/v1/ips/{ip}", tag = "ips",
    params(("ip" = String, Path, description = "IPv4 or IPv6 address")),
    responses((status = 200, body = IpDetail), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn ip_detail(
    State(st): State<AppState>,
    ip: Result<Path<String>, PathRejection>,
) -> Result<Json<IpDetail>, ApiError> {
    let Path(ip) = ip?;
    let ip = parse_ip(&ip)?;
    let now = stats::now();
    let since = now.minus(Duration::from_secs(30 * 86_400));
    let (history, activity, decisions, events) = st
        .pool
        .run(move |s| {
            let h = s.ip_history(ip)?;
            let a = s.ip_activity(ip, since)?;
            let d = s.decisions(&DecisionQuery {
                target: Some(IpNet::from(ip)),
                limit: Some(100),
                ..Default::default()
            })?;
            let e = s.fleet_views().host_events(
                &EventQuery {
                    ip: Some(ip),
                    limit: Some(IP_RECENT_EVENTS + 1),
                    ..Default::default()
                },
                None,
            )?;
            Ok((h, a, d, e))
        })
        .await?;
    let mut events = events;
    let more = events.len() > IP_RECENT_EVENTS as usize;
    events.truncate(IP_RECENT_EVENTS as usize);
    let recent_events_cursor = if more {
        events.last().map(|e| e.stored.id)
    } else {
        None
    };
    let decisions: Vec<DecisionDto> = decisions.iter().map(|d| decision_dto(d, now)).collect();
    let current_ban = decisions.iter().find(|d| d.in_force).map(|d| DecisionDto {
        id: d.id,
        target: d.target.clone(),
        jail: d.jail.clone(),
        origin: d.origin.clone(),
        reason: d.reason.clone(),
        created: d.created.clone(),
        expires: d.expires.clone(),
        simulated: d.simulated,
        level: d.level,
        status: d.status.clone(),
        in_force: true,
        host: None,
    });
    Ok(Json(IpDetail {
        ip: ip.to_string(),
        geo: st.geo.lookup(ip).map(|g| (*g).clone()),
        history: history.map(|h| HistoryDto {
            first_seen: h.first_seen.to_string(),
            last_seen: h.last_seen.to_string(),
            failures: h.failures,
            times_banned: h.times_banned,
            events: h.events,
        }),
        jails: activity
            .jails
            .into_iter()
            .map(|(jail, events)| JailEvents { jail, events })
            .collect(),
        timeline: activity
            .hours
            .into_iter()
            .map(|(t, events)| TimelinePoint {
                t: t.to_string(),
                events,
            })
            .collect(),
        decisions,
        current_ban,
        recent_events: events.into_iter().map(EventDto::from).collect(),
        recent_events_cursor,
    }))
}

fn json_bytes(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn compute_stats(st: &AppState, range: Range) -> Result<Bytes, ApiError> {
    let st2 = st.clone();
    let body = st
        .pool
        .run(move |s| {
            let v = stats::compute(s, &st2.geo, range, stats::now())?;
            serde_json::to_vec(&v)
                .map(Bytes::from)
                .map_err(|e| palisade_store::StoreError::Corrupt(e.to_string()))
        })
        .await?;
    st.stats.put(range, body.clone());
    Ok(body)
}

/// Overview numbers: events and bans over time, top offenders, countries, jails. Answers
/// are reused for a few seconds.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", params(StatsParams),
    responses((status = 200, body = crate::stats::Stats), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn stats_handler(
    State(st): State<AppState>,
    q: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let range = Range::parse(q.range.as_deref())
        .ok_or_else(|| ApiError::BadRequest("range: expected 24h, 7d or 30d".into()))?;
    match st.stats.get(range) {
        Cached::Fresh(b) | Cached::Stale(b) => Ok(json_bytes(b)),
        Cached::Refresh(b) => {
            let st2 = st.clone();
            tokio::spawn(async move {
                if compute_stats(&st2, range).await.is_err() {
                    st2.stats.refresh_failed(range);
                }
            });
            Ok(json_bytes(b))
        }
        Cached::Missing => Ok(json_bytes(compute_stats(&st, range).await?)),
    }
}

fn allow_dto(a: palisade_store::AllowEntry) -> AllowDto {
    AllowDto {
        id: a.id,
        net: a.net.to_string(),
        comment: a.comment,
        created: a.created.to_string(),
    }
}

/// Pushes the stored allowlist to the daemon; whether it took it.
async fn push_allowlist(st: &AppState, entries: &[palisade_store::AllowEntry]) -> bool {
    let nets: Vec<IpNet> = entries.iter().map(|a| a.net).collect();
    match control_call(st, move |c| c.set_allowlist(nets)).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "the daemon did not take the allowlist update");
            false
        }
    }
}

/// Allowlist entries kept in the database (the configuration's `[allowlist]` applies too).
#[utoipa::path(get, path = "/api/v1/allowlist", tag = "allowlist",
    responses((status = 200, body = AllowList), (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn allowlist(State(st): State<AppState>) -> Result<Json<AllowList>, ApiError> {
    let items = st.pool.run(|s| s.allowlist()).await?;
    Ok(Json(AllowList {
        items: items.into_iter().map(allow_dto).collect(),
        daemon_updated: true,
    }))
}

/// Adds an allowlist entry (or updates its comment) and hands the list to the daemon, which
/// lifts bans it now covers.
#[utoipa::path(post, path = "/api/v1/allowlist", tag = "allowlist", request_body = AllowRequest,
    responses((status = 201, body = AllowList), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn allowlist_add(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<AllowRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<AllowList>), ApiError> {
    let Json(req) = body?;
    let net = parse_net(&req.net)?;
    let comment: String = req.comment.chars().take(256).collect();
    tracing::info!(user = %p.name, %net, "allowlist entry added over the API");
    let items = st
        .pool
        .run(move |s| {
            s.allowlist_add(&net, &comment, stats::now())?;
            s.allowlist()
        })
        .await?;
    let daemon_updated = push_allowlist(&st, &items).await;
    Ok((
        StatusCode::CREATED,
        Json(AllowList {
            items: items.into_iter().map(allow_dto).collect(),
            daemon_updated,
        }),
    ))
}

/// Removes an allowlist entry and hands the list to the daemon.
#[utoipa::path(delete, path = "/api/v1/allowlist/{id}", tag = "allowlist",
    params(("id" = i64, Path, description = "Entry id")),
    responses((status = 200, body = AllowList), (status = 404, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn allowlist_delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AllowList>, ApiError> {
    let Path(id) = id?;
    let (found, items) = st
        .pool
        .run(move |s| Ok((s.allowlist_remove(id)?, s.allowlist()?)))
        .await?;
    if !found {
        return Err(ApiError::NotFound);
    }
    tracing::info!(user = %p.name, id, "allowlist entry removed over the API");
    let daemon_updated = push_allowlist(&st, &items).await;
    Ok(Json(AllowList {
        items: items.into_iter().map(allow_dto).collect(),
        daemon_updated,
    }))
}

/// Jails and counters from the running daemon.
#[utoipa::path(get, path = "/api/v1/jails", tag = "jails",
    responses((status = 200, body = JailsDto), (status = 401, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn jails(State(st): State<AppState>) -> Result<Json<JailsDto>, ApiError> {
    let c = st.control.clone();
    let s = tokio::task::spawn_blocking(move || c.status())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(JailsDto {
        jails: s.jails,
        counters: s.counters,
        active_bans: s.active_bans,
        lines_per_sec: s.lines_per_sec,
        sources: s.sources,
        responders: s.responders,
        store: s.store,
    }))
}

/// Version and GeoIP databases (with the attribution their licence requires).
#[utoipa::path(get, path = "/api/v1/meta", tag = "system",
    responses((status = 200, body = MetaDto), (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn meta(State(st): State<AppState>) -> Json<MetaDto> {
    Json(MetaDto {
        version: env!("CARGO_PKG_VERSION"),
        geoip: st
            .geo
            .databases()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        geoip_attribution: st.geo.attribution(),
    })
}

/// Live feed filter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// Only this host's events and decisions: a fleet agent's name, or `@local`.
    pub host: Option<String>,
}

/// Live feed: Server-Sent Events `event` (with `host`, the fleet agent it came from, absent
/// for this host), `ban`, `unban`, `fleet_decision` (a fleet server's ban log entry, with
/// `origin` agent and `scope`) (JSON data), and `lagged` (how many items a slow client
/// missed).
#[utoipa::path(get, path = "/api/v1/feed", tag = "feed", params(FeedParams),
    responses((status = 200, content_type = "text/event-stream",
               description = "Server-Sent Events"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn feed(
    State(st): State<AppState>,
    q: Result<Query<FeedParams>, QueryRejection>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(q) = q?;
    let host = crate::fleet::parse_host(q.host.as_deref())?;
    let rx = st.feed.subscribe();
    crate::fleet::feed_start(&st).await;
    let stop = st.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (rx, stop, st, host),
        |(mut rx, mut stop, st, host)| async move {
            use tokio::sync::broadcast::error::RecvError;
            if *stop.borrow() {
                return None;
            }
            let ev = loop {
                break tokio::select! {
                r = rx.recv() => match r {
                    Ok(item) => {
                        if host.as_ref().is_some_and(|h| !crate::fleet::feed_matches(&item, h)) {
                            continue;
                        }
                        let mut v = serde_json::to_value(&*item).unwrap_or_default();
                        if let crate::FeedItem::Event { ip, .. } = &*item {
                            if let Some(c) = ip.parse().ok().and_then(|ip| st.geo.country(ip)) {
                                v["country"] = c.into();
                            }
                        }
                        SseEvent::default().event(item.kind()).data(v.to_string())
                    }
                    Err(RecvError::Lagged(n)) => SseEvent::default().event("lagged").data(n.to_string()),
                    Err(RecvError::Closed) => return None,
                },
                _ = stop.wait_for(|s| *s) => return None,
                };
            };
            Some((Ok(ev), (rx, stop, st, host)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub(crate) async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    json_bytes(
        DOC.get_or_init(|| Bytes::from(crate::openapi::document()))
            .clone(),
    )
}

fn prom(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The daemon's part of `/metrics`, read from the typed status (a renamed field does not
/// compile, rather than exporting 0).
fn write_status_metrics(out: &mut String, s: &palisade_proto::StatusReport) {
    let c = &s.counters;
    for (name, value, help) in [
        ("palisade_lines_read_total", c.lines, "Log lines read."),
        (
            "palisade_events_total",
            c.events,
            "Events produced by filters.",
        ),
        (
            "palisade_events_dropped_total",
            c.events_dropped,
            "Events lost in a failed store write (the store writer no longer drops under lag).",
        ),
        (
            "palisade_header_rejects_total",
            c.header_rejects,
            "Log lines whose syslog header could not be read.",
        ),
        (
            "palisade_ambiguous_lines_total",
            c.ambiguous_lines,
            "Log lines refused: offender not told apart from attacker text (never blamed).",
        ),
        (
            "palisade_responder_retries_total",
            c.responder_retries,
            "Responder applies retried after a failure.",
        ),
        (
            "palisade_responder_pending",
            c.responder_pending,
            "Bans waiting for a responder retry.",
        ),
        (
            "palisade_responder_given_up_total",
            c.responder_given_up,
            "Bans whose responder retries ran out (the periodic reconcile puts them back).",
        ),
        (
            "palisade_positions_held",
            u64::from(c.positions_held),
            "1 when source positions stopped moving after a store failure.",
        ),
        ("palisade_decisions_total", c.decisions, "Decisions taken."),
        (
            "palisade_responder_errors_total",
            c.responder_errors,
            "Responder failures.",
        ),
        (
            "palisade_store_errors_total",
            c.store_errors,
            "Store write failures.",
        ),
        (
            "palisade_source_errors_total",
            c.source_errors,
            "Log source failures.",
        ),
        (
            "palisade_reloads_total",
            c.reloads,
            "Successful configuration reloads.",
        ),
        (
            "palisade_reload_failures_total",
            c.reload_failures,
            "Refused or failed configuration reloads.",
        ),
    ] {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        prom(out, name, kind, help, value);
    }
    prom(
        out,
        "palisade_active_bans",
        "gauge",
        "Bans in force.",
        s.active_bans,
    );
    prom(
        out,
        "palisade_lines_per_second",
        "gauge",
        "Log lines read per second, over the last seconds.",
        s.lines_per_sec,
    );
    prom(
        out,
        "palisade_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        s.uptime_secs,
    );
    prom(
        out,
        "palisade_store_up",
        "gauge",
        "Whether the store's last write succeeded.",
        u8::from(s.store.ok),
    );
    type JailField = fn(&palisade_proto::JailStatus) -> u64;
    let per_jail: [(&str, &str, &str, JailField); 3] = [
        (
            "palisade_jail_failures_total",
            "counter",
            "Failures counted per jail.",
            |j| j.failures,
        ),
        (
            "palisade_jail_detections_total",
            "counter",
            "Detections per jail.",
            |j| j.detections,
        ),
        (
            "palisade_jail_tracked",
            "gauge",
            "Addresses tracked per jail.",
            |j| j.tracked,
        ),
    ];
    for (metric, kind, help, get) in per_jail {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for j in &s.jails {
            let _ = writeln!(out, "{metric}{{jail=\"{}\"}} {}", label(&j.name), get(j));
        }
    }
    let _ = writeln!(
        out,
        "# HELP palisade_source_lines_total Lines read per log input.\n# TYPE palisade_source_lines_total counter"
    );
    for src in &s.sources {
        let _ = writeln!(
            out,
            "palisade_source_lines_total{{path=\"{}\",state=\"{}\"}} {}",
            label(&src.path),
            src.state.as_str(),
            src.lines
        );
    }
    let _ = writeln!(
        out,
        "# HELP palisade_responder_up Whether the responder's last apply or revoke succeeded.\n# TYPE palisade_responder_up gauge"
    );
    for r in &s.responders {
        let _ = writeln!(
            out,
            "palisade_responder_up{{responder=\"{}\"}} {}",
            label(&r.name),
            u8::from(r.ok)
        );
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus metrics: the daemon's counters and the API's store latency.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format"),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    let c = st.control.clone();
    let status = tokio::task::spawn_blocking(move || c.status())
        .await
        .ok()
        .and_then(Result::ok);
    let mut out = String::with_capacity(4096);
    prom(
        &mut out,
        "palisade_up",
        "gauge",
        "Whether the daemon answered.",
        u8::from(status.is_some()),
    );
    if let Some(s) = &status {
        write_status_metrics(&mut out, s);
    }
    let l = &st.pool.latency;
    let _ = writeln!(
        out,
        "# HELP palisade_api_store_seconds Latency of store calls made by the API.\n\
         # TYPE palisade_api_store_seconds histogram"
    );
    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "palisade_api_store_seconds_bucket{{le=\"{b}\"}} {}",
            l.buckets[i].load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "palisade_api_store_seconds_bucket{{le=\"+Inf\"}} {}\n\
         palisade_api_store_seconds_sum {}\npalisade_api_store_seconds_count {}",
        l.buckets[10].load(Relaxed),
        l.sum_micros.load(Relaxed) as f64 / 1e6,
        l.count.load(Relaxed)
    );
    prom(
        &mut out,
        "palisade_api_store_errors_total",
        "counter",
        "Failed store calls made by the API.",
        l.errors.load(Relaxed),
    );
    prom(
        &mut out,
        "palisade_feed_subscribers",
        "gauge",
        "Live feed connections.",
        u8::from(st.feed.has_subscribers()),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}

/// Dashboard files; page paths get `index.html` (client routing, see [`assets::resolve`]).
async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") {
        return ApiError::NotFound.into_response();
    }
    match assets::resolve(path) {
        Some(a) => {
            let cache = if a.path.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(a.mime)),
                    (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
                ],
                Body::from(a.body),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("1w").unwrap(), 604_800);
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("10").is_ok());
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; palisade_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
