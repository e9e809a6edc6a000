//! `/api/v1/fleet/*`: a fleet server's agents, its fleet ban log, the operator's actions on
//! them (revoke an agent, push a block list) and the fleet overview, read from and written to
//! the fleet tables of the store through the request pool
//! ([`palisade_store::Store::fleet_views`]). The HTTP server does not run the fleet
//! (palisade-fleet does) and does not depend on it: revoke and block are the one
//! implementation in [`palisade_store::fleet::admin`] that `palisade fleet agents revoke` and
//! `palisade fleet block` also call; a running fleet server's poller notices within a second
//! (cuts the revoked agent, pushes the new bans).
//!
//! Also here: the `host` query parameter shared by `/events`, `/decisions` and `/feed`
//! ([`parse_host`]), and the live feed's fleet pump ([`pump`]): agents' events and fleet ban
//! log entries, read from the store while someone watches the feed.

use crate::api::AppState;
use crate::control::FeedItem;
use crate::error::{ApiError, ErrorBody};
use crate::stats;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use palisade_store::fleet::admin::{self as fleet_admin, AdminError};
use palisade_store::fleet::views::{FleetLogQuery, HostFilter};
use palisade_store::fleet::{AgentReport, FleetLogEntry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// The `host` value that means this host's own events (not a valid agent name).
pub(crate) const LOCAL_HOST: &str = "@local";
/// Most addresses in one `POST /fleet/block` (the body is 64 KiB at most anyway).
const BLOCK_MAX_TARGETS: usize = 10_000;
/// Most agent names in one `POST /fleet/block`.
const BLOCK_MAX_AGENTS: usize = 1_000;
/// Window over which an agent's events per second are measured.
const RATE_WINDOW_SECS: i64 = 60;

/// Whether `name` is a usable agent name (as enrollment takes it: 1 to 64 of
/// `A-Z a-z 0-9 . _ -`).
fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= fleet_admin::NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses the `host` query parameter: absent or empty = every host, `@local` = this host,
/// else an agent name.
pub(crate) fn parse_host(h: Option<&str>) -> Result<Option<HostFilter>, ApiError> {
    match h.map(str::trim) {
        None | Some("") => Ok(None),
        Some(LOCAL_HOST) => Ok(Some(HostFilter::Local)),
        Some(n) if valid_agent_name(n) => Ok(Some(HostFilter::Agent(n.to_owned()))),
        Some(n) => Err(ApiError::BadRequest(format!(
            "host {:?}: expected {LOCAL_HOST} or an agent name (1 to 64 of A-Z a-z 0-9 . _ -)",
            n.chars().take(80).collect::<String>()
        ))),
    }
}

/// Whether a feed item concerns `host`.
pub(crate) fn feed_matches(item: &FeedItem, host: &HostFilter) -> bool {
    let item_host = match item {
        FeedItem::Event { host, .. } => host.as_deref(),
        FeedItem::Ban { .. } | FeedItem::Unban { .. } => None,
        FeedItem::FleetDecision { origin, scope, .. } => {
            return match host {
                HostFilter::Local => origin.is_none(),
                HostFilter::Agent(n) => {
                    origin.as_deref() == Some(n.as_str())
                        || scope.as_ref().is_none_or(|s| s.contains(n))
                }
            }
        }
    };
    match host {
        HostFilter::Local => item_host.is_none(),
        HostFilter::Agent(n) => item_host == Some(n.as_str()),
    }
}

fn usage(e: AdminError) -> Result<String, palisade_store::StoreError> {
    match e {
        AdminError::Usage(m) => Ok(m),
        AdminError::Store(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------
// Agents

/// One agent (the fields of `palisade fleet agents --json`, and its event rate and bans).
#[derive(Serialize, ToSchema)]
pub(crate) struct FleetAgentDto {
    /// Name.
    name: String,
    /// Id.
    id: String,
    /// Connected now.
    connected: bool,
    /// Revoked.
    revoked: bool,
    /// Last seen (RFC 3339), if ever.
    last_seen: Option<String>,
    /// Its Palisade version.
    version: String,
    /// Protocol version of its connection.
    protocol: u16,
    /// Events received.
    events: u64,
    /// Events per second stored from it over the last minute.
    events_per_sec: f64,
    /// Events it has that the server has not stored yet (as last reported).
    backlog: u64,
    /// Events it dropped (spool cap).
    gaps: u64,
    /// Its clock minus the server's (ms), if measured.
    clock_offset_ms: Option<i64>,
    /// |offset| over 30 s.
    skewed: bool,
    /// Fleet ban log cursor it applied.
    ban_cursor: u64,
    /// Fleet bans in force that apply to it.
    fleet_bans: u64,
}

impl FleetAgentDto {
    fn of(a: AgentReport, recent_events: u64, fleet_bans: u64) -> Self {
        FleetAgentDto {
            name: a.name,
            id: a.id,
            connected: a.connected,
            revoked: a.revoked,
            last_seen: a.last_seen,
            version: a.version,
            protocol: a.protocol,
            events: a.events,
            events_per_sec: rate(Some(recent_events)),
            backlog: a.backlog,
            gaps: a.gaps,
            clock_offset_ms: a.clock_offset_ms,
            skewed: a.skewed,
            ban_cursor: a.ban_cursor,
            fleet_bans,
        }
    }
}

/// The agents.
#[derive(Serialize, ToSchema)]
pub(crate) struct FleetAgentList {
    /// Every enrolled agent (revoked ones included), by name.
    items: Vec<FleetAgentDto>,
}

/// Everything the agents page and the overview need, in one store visit.
struct FleetSnapshot {
    agents: Vec<AgentReport>,
    /// Events per host over the rate window (`None` = this host).
    recent: HashMap<Option<String>, u64>,
    /// Fleet bans in force.
    bans: Vec<FleetLogEntry>,
}

async fn snapshot(st: &AppState) -> Result<FleetSnapshot, ApiError> {
    let now = stats::now();
    st.pool
        .run(move |s| {
            let v = s.fleet_views();
            let agents = palisade_store::fleet::agent_reports(v.as_fleet(), now)?;
            let window = now.minus(Duration::from_secs(RATE_WINDOW_SECS as u64));
            let recent = v
                .host_counts(window)?
                .into_iter()
                .map(|c| (c.host, c.events))
                .collect();
            let bans = v.as_fleet().active_bans(now)?;
            Ok(FleetSnapshot {
                agents,
                recent,
                bans,
            })
        })
        .await
}

/// Events per second over the rate window.
fn rate(events: Option<u64>) -> f64 {
    events.unwrap_or(0) as f64 / RATE_WINDOW_SECS as f64
}

fn bans_for(bans: &[FleetLogEntry], name: &str) -> u64 {
    bans.iter().filter(|b| b.applies_to(name)).count() as u64
}

/// The fleet's agents: connection state, last seen, events and their rate, backlog, gaps,
/// clock skew, fleet bans (empty when this host is no fleet server).
#[utoipa::path(get, path = "/api/v1/fleet/agents", tag = "fleet",
    responses((status = 200, body = FleetAgentList), (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn agents(State(st): State<AppState>) -> Result<Json<FleetAgentList>, ApiError> {
    let snap = snapshot(&st).await?;
    let items = snap
        .agents
        .into_iter()
        .map(|a| {
            let recent = snap.recent.get(&Some(a.name.clone())).copied().unwrap_or(0);
            let bans = if a.revoked {
                0
            } else {
                bans_for(&snap.bans, &a.name)
            };
            FleetAgentDto::of(a, recent, bans)
        })
        .collect();
    Ok(Json(FleetAgentList { items }))
}

/// What a revoke did.
#[derive(Serialize, ToSchema)]
pub(crate) struct RevokeAnswer {
    /// The agent revoked.
    revoked: String,
}

/// Revokes an agent (as `palisade fleet agents revoke NAME`): its identity is refused from
/// now on, and a running fleet server cuts its connection within a second.
#[utoipa::path(post, path = "/api/v1/fleet/agents/{name}/revoke", tag = "fleet",
    params(("name" = String, Path, description = "Agent name")),
    responses((status = 200, body = RevokeAnswer), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn revoke(
    State(st): State<AppState>,
    Extension(p): Extension<crate::auth::Principal>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<RevokeAnswer>, ApiError> {
    let Path(name) = name?;
    if !valid_agent_name(&name) {
        return Err(ApiError::BadRequest(
            "agent name: 1 to 64 of A-Z a-z 0-9 . _ -".into(),
        ));
    }
    let n = name.clone();
    let r = st
        .pool
        .run(
            move |s| match fleet_admin::revoke(s.fleet_views().as_fleet(), &n) {
                Ok(()) => Ok(None),
                Err(e) => usage(e).map(Some),
            },
        )
        .await?;
    if r.is_some() {
        return Err(ApiError::NotFound);
    }
    tracing::info!(user = %p.name, agent = %name, "fleet agent revoked over the API");
    Ok(Json(RevokeAnswer { revoked: name }))
}

// ---------------------------------------------------------------------------------------
// Fleet ban log

/// One entry of the fleet ban log.
#[derive(Serialize, ToSchema)]
pub(crate) struct FleetDecisionDto {
    /// Log sequence (cursor).
    seq: i64,
    /// `ban` or `unban`.
    action: String,
    /// Address or network.
    target: String,
    /// Jail, fleet jail, or `fleet-block` (a pushed block list).
    jail: String,
    /// Reason.
    reason: String,
    /// Always `fleet`: agents apply it with this origin.
    origin: &'static str,
    /// The agent whose local ban this was (absent = the fleet server's own: a fleet jail's
    /// detection or a block list).
    #[serde(skip_serializing_if = "Option::is_none")]
    origin_agent: Option<String>,
    /// The agents it applies to (absent = all).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<Vec<String>>,
    /// Created.
    created: String,
    /// Ends (absent = until lifted).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    /// A ban in force now (the latest entry of its target, not expired).
    in_force: bool,
}

fn fleet_dto(e: FleetLogEntry, in_force: bool) -> FleetDecisionDto {
    FleetDecisionDto {
        seq: e.seq,
        action: e.action,
        target: e.target.to_string(),
        jail: e.jail,
        reason: e.reason,
        origin: "fleet",
        origin_agent: e.origin,
        scope: e.scope,
        created: e.created.to_string(),
        expires: e.expires.map(|t| t.to_string()),
        in_force,
    }
}

/// Fleet ban log entries.
#[derive(Serialize, ToSchema)]
pub(crate) struct FleetDecisionList {
    /// Entries, newest first.
    items: Vec<FleetDecisionDto>,
    /// Pass as `cursor` for the next (older) page (`status=all` only); absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<i64>,
}

/// Fleet ban log filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FleetDecisionParams {
    /// Only entries an agent took or that apply to it (an agent name).
    host: Option<String>,
    /// `active` (default: fleet bans in force) or `all` (the whole log).
    status: Option<String>,
    /// `next_cursor` of the previous page (`status=all`).
    cursor: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// The fleet ban log of a fleet server: fleet bans in force (default) or every entry, with
/// the agent that took each (`origin_agent`) and the agents it applies to (`scope`).
#[utoipa::path(get, path = "/api/v1/fleet/decisions", tag = "fleet",
    params(FleetDecisionParams),
    responses((status = 200, body = FleetDecisionList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn decisions(
    State(st): State<AppState>,
    q: Result<Query<FleetDecisionParams>, QueryRejection>,
) -> Result<Json<FleetDecisionList>, ApiError> {
    let Query(q) = q?;
    let host = match parse_host(q.host.as_deref())? {
        None => None,
        Some(HostFilter::Agent(n)) => Some(n),
        // The fleet ban log holds no bans of the server's own daemon.
        Some(HostFilter::Local) => {
            return Ok(Json(FleetDecisionList {
                items: Vec::new(),
                next_cursor: None,
            }))
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let active = match q.status.as_deref().unwrap_or("active") {
        "active" => true,
        "all" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "status {:?}: expected active or all",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    let now = stats::now();
    let cursor = q.cursor;
    let (rows, in_force): (Vec<FleetLogEntry>, Vec<i64>) = st
        .pool
        .run(move |s| {
            let v = s.fleet_views();
            let mut bans = v.as_fleet().active_bans(now)?;
            let live: Vec<i64> = bans.iter().map(|b| b.seq).collect();
            if active {
                bans.retain(|b| {
                    host.as_ref()
                        .is_none_or(|h| b.applies_to(h) || b.origin.as_deref() == Some(h.as_str()))
                });
                bans.reverse();
                bans.truncate(limit as usize);
                return Ok((bans, live));
            }
            let rows = v.fleet_log(&FleetLogQuery {
                host,
                before_seq: cursor,
                limit: limit + 1,
            })?;
            Ok((rows, live))
        })
        .await?;
    let mut rows = rows;
    let next_cursor = if !active && rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(FleetDecisionList {
        items: rows
            .into_iter()
            .map(|e| {
                let live = in_force.contains(&e.seq);
                fleet_dto(e, live)
            })
            .collect(),
        next_cursor,
    }))
}

/// A reviewed block list to push as fleet bans.
#[derive(Deserialize, ToSchema)]
pub(crate) struct BlockRequest {
    /// Addresses or CIDR networks (at most 10,000; each must be bannable).
    targets: Vec<String>,
    /// Agents to push them to (absent = every agent); each must be enrolled and not revoked.
    agents: Option<Vec<String>>,
    /// Length (`30m`, `1h`, `2d`, `1w`, or seconds); until lifted if absent.
    duration: Option<String>,
    /// Reason recorded with the bans.
    reason: Option<String>,
}

/// What a block did.
#[derive(Serialize, ToSchema)]
pub(crate) struct BlockAnswer {
    /// Fleet bans appended to the log.
    appended: usize,
}

/// Pushes a reviewed list of addresses/networks as fleet bans to the given agents (as
/// `palisade fleet block`): all appended in one transaction, or none when any entry or agent
/// name is refused.
#[utoipa::path(post, path = "/api/v1/fleet/block", tag = "fleet", request_body = BlockRequest,
    responses((status = 201, body = BlockAnswer), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn block(
    State(st): State<AppState>,
    Extension(p): Extension<crate::auth::Principal>,
    body: Result<Json<BlockRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BlockAnswer>), ApiError> {
    let Json(req) = body?;
    if req.targets.is_empty() {
        return Err(ApiError::BadRequest("targets: no address given".into()));
    }
    if req.targets.len() > BLOCK_MAX_TARGETS {
        return Err(ApiError::BadRequest(format!(
            "targets: more than {BLOCK_MAX_TARGETS}"
        )));
    }
    let mut targets = Vec::with_capacity(req.targets.len());
    for (i, t) in req.targets.iter().enumerate() {
        let net = fleet_admin::parse_target(t.trim()).map_err(|why| {
            ApiError::BadRequest(format!(
                "targets[{i}] {:?}: {why}",
                t.chars().take(80).collect::<String>()
            ))
        })?;
        targets.push(net);
    }
    let agents = match req.agents {
        None => None,
        Some(a) => {
            if a.len() > BLOCK_MAX_AGENTS {
                return Err(ApiError::BadRequest(format!(
                    "agents: more than {BLOCK_MAX_AGENTS}"
                )));
            }
            if let Some(bad) = a.iter().find(|n| !valid_agent_name(n)) {
                return Err(ApiError::BadRequest(format!(
                    "agents: {:?} is no agent name (1 to 64 of A-Z a-z 0-9 . _ -)",
                    bad.chars().take(80).collect::<String>()
                )));
            }
            Some(a)
        }
    };
    let duration = req
        .duration
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(crate::api::parse_duration)
        .transpose()?
        .map(Duration::from_secs);
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("block list pushed by {}", p.name));
    let reason: String = reason.chars().take(256).collect();
    let n_targets = targets.len();
    let now = stats::now();
    let r = st
        .pool
        .run(move |s| {
            match fleet_admin::block(
                s.fleet_views().as_fleet(),
                &targets,
                agents.as_deref(),
                duration,
                &reason,
                now,
            ) {
                Ok(n) => Ok(Ok(n)),
                Err(e) => usage(e).map(Err),
            }
        })
        .await?;
    let appended = r.map_err(ApiError::BadRequest)?;
    tracing::info!(user = %p.name, targets = n_targets, "fleet block list pushed over the API");
    Ok((StatusCode::CREATED, Json(BlockAnswer { appended })))
}

// ---------------------------------------------------------------------------------------
// Overview

/// One agent in the overview.
#[derive(Serialize, ToSchema)]
pub(crate) struct FleetHostDto {
    /// Agent name.
    host: String,
    /// Connected now.
    connected: bool,
    /// Events received from it (all time).
    events: u64,
    /// Events per second stored from it over the last minute.
    events_per_sec: f64,
    /// Fleet bans in force that apply to it.
    fleet_bans: u64,
}

/// The whole fleet at a glance.
#[derive(Serialize, ToSchema)]
pub(crate) struct FleetOverview {
    /// Agents enrolled and not revoked.
    agents_total: u64,
    /// Of those, connected now.
    agents_connected: u64,
    /// Of those, with a clock skew over 30 s.
    agents_skewed: u64,
    /// Events per second stored from all agents over the last minute.
    events_per_sec: f64,
    /// Events waiting on agents (sum of backlogs).
    backlog: u64,
    /// Events agents dropped (sum of gaps).
    gaps: u64,
    /// Fleet bans in force.
    fleet_bans: u64,
    /// Each agent (not revoked), by name.
    hosts: Vec<FleetHostDto>,
}

/// Overview of a fleet server: agents connected of total, event rate, backlog, gaps, fleet
/// bans, and per agent its events (received, and per second over the last minute) and the
/// fleet bans that apply to it. Costs the agents' rows, the ban log's bans in force and one
/// minute of events, whatever the store holds.
#[utoipa::path(get, path = "/api/v1/fleet/overview", tag = "fleet",
    responses((status = 200, body = FleetOverview), (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn overview(State(st): State<AppState>) -> Result<Json<FleetOverview>, ApiError> {
    let snap = snapshot(&st).await?;
    let live: Vec<&AgentReport> = snap.agents.iter().filter(|a| !a.revoked).collect();
    let hosts: Vec<FleetHostDto> = live
        .iter()
        .map(|a| FleetHostDto {
            host: a.name.clone(),
            connected: a.connected,
            events: a.events,
            events_per_sec: rate(snap.recent.get(&Some(a.name.clone())).copied()),
            fleet_bans: bans_for(&snap.bans, &a.name),
        })
        .collect();
    Ok(Json(FleetOverview {
        agents_total: live.len() as u64,
        agents_connected: live.iter().filter(|a| a.connected).count() as u64,
        agents_skewed: live.iter().filter(|a| a.skewed).count() as u64,
        events_per_sec: rate(Some(
            snap.recent
                .iter()
                .filter(|(h, _)| h.is_some())
                .map(|(_, n)| n)
                .sum(),
        )),
        backlog: live.iter().map(|a| a.backlog).sum(),
        gaps: live.iter().map(|a| a.gaps).sum(),
        fleet_bans: snap.bans.len() as u64,
        hosts,
    }))
}

// ---------------------------------------------------------------------------------------
// Live feed pump

/// Agents' events and fleet ban log entries read per pass (more are skipped, counted in the
/// log: the feed is a view, the store keeps everything).
const PUMP_BATCH: u32 = 1_000;
/// How often the store is read while someone watches the feed.
const PUMP_EVERY: Duration = Duration::from_secs(1);

/// Where the live feed's fleet pump reads from: (event id, ban log seq) already published;
/// `None` while nobody listens.
#[derive(Default)]
pub(crate) struct FeedCursor(std::sync::Mutex<Option<(i64, i64)>>);

impl FeedCursor {
    fn get(&self) -> Option<(i64, i64)> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set(&self, v: Option<(i64, i64)>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }
}

/// Called by a new live feed subscriber (after subscribing, before answering): when the pump
/// has no position yet, it starts at the store's head now, so that everything stored after
/// the subscriber's connection is answered reaches it.
pub(crate) async fn feed_start(st: &AppState) {
    if st.fleet_feed.get().is_some() {
        return;
    }
    let heads = st
        .pool
        .run(|s| {
            let v = s.fleet_views();
            Ok((v.events_head()?, v.as_fleet().log_head()?))
        })
        .await;
    if let Ok(h) = heads {
        let mut g = st.fleet_feed.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(h);
        }
    }
}

/// Publishes what fleet agents ship (stored by the fleet server, possibly another process)
/// and new fleet ban log entries on the live feed, while it has subscribers, from where
/// [`feed_start`] put the first subscriber: the feed shows what happens from then on.
pub(crate) async fn pump(st: AppState) {
    let mut stop = st.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PUMP_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !st.feed.has_subscribers() {
            st.fleet_feed.set(None);
            continue;
        }
        let prev = st.fleet_feed.get();
        let r = st
            .pool
            .run(move |s| {
                let v = s.fleet_views();
                let (ev_after, log_after) = match prev {
                    Some(c) => c,
                    None => (v.events_head()?, v.as_fleet().log_head()?),
                };
                let evs = v.agent_events_after(ev_after, PUMP_BATCH)?;
                let log = v.as_fleet().log_since(log_after, PUMP_BATCH)?;
                let mut ev_next = evs.last().map_or(ev_after, |e| e.stored.id);
                if evs.len() == PUMP_BATCH as usize {
                    // Far behind: skip to the head rather than fall further behind.
                    ev_next = ev_next.max(v.events_head()?);
                }
                let log_next = log.last().map_or(log_after, |e| e.seq);
                Ok((evs, log, (ev_next, log_next)))
            })
            .await;
        let Ok((evs, log, next)) = r else {
            continue;
        };
        st.fleet_feed.set(Some(next));
        for e in evs {
            let mut item = FeedItem::event(&e.stored.jail, &e.stored.event);
            if let FeedItem::Event { host, .. } = &mut item {
                *host = e.host;
            }
            st.feed.publish(item);
        }
        for e in log {
            st.feed.publish(FeedItem::FleetDecision {
                seq: e.seq,
                action: e.action,
                target: e.target.to_string(),
                jail: e.jail,
                reason: e.reason,
                origin: e.origin,
                scope: e.scope,
                expires: e.expires.map(|t| t.to_string()),
            });
        }
    }
}
