//! `/api/v1/fleet/*`: the fleet server's agents, read from the fleet tables of the store
//! ([`palisade_store::fleet::FleetStore`]), with the same fields as
//! `palisade fleet agents --json` ([`palisade_store::fleet::AgentReport`]). The HTTP server
//! does not run the fleet (palisade-fleet does) and does not depend on it.

use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use palisade_store::fleet::{AgentReport, FleetStore};
use palisade_store::StoreError;
use serde::Serialize;
use std::sync::Mutex;
use utoipa::ToSchema;

/// One connection to the fleet tables, opened on first use.
pub(crate) struct FleetDb {
    url: String,
    conn: Mutex<Option<Box<dyn FleetStore>>>,
}

impl FleetDb {
    pub(crate) fn new(url: String) -> Self {
        FleetDb {
            url,
            conn: Mutex::new(None),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn FleetStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(palisade_store::fleet::open(&self.url)?);
        }
        let r = f(g.as_mut().expect("opened above").as_mut());
        if r.is_err() {
            // A broken connection is reopened on the next call.
            *g = None;
        }
        r
    }
}

/// One agent (the fields of `palisade fleet agents --json`).
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
}

impl From<AgentReport> for FleetAgentDto {
    fn from(a: AgentReport) -> Self {
        FleetAgentDto {
            name: a.name,
            id: a.id,
            connected: a.connected,
            revoked: a.revoked,
            last_seen: a.last_seen,
            version: a.version,
            protocol: a.protocol,
            events: a.events,
            backlog: a.backlog,
            gaps: a.gaps,
            clock_offset_ms: a.clock_offset_ms,
            skewed: a.skewed,
            ban_cursor: a.ban_cursor,
        }
    }
}

/// The agents.
#[derive(Serialize, ToSchema)]
pub(crate) struct FleetAgentList {
    /// Every enrolled agent (revoked ones included), by name.
    items: Vec<FleetAgentDto>,
}

/// The fleet's agents: connection state, last seen, events, backlog, clock skew (empty when
/// this host is no fleet server).
#[utoipa::path(get, path = "/api/v1/fleet/agents", tag = "fleet",
    responses((status = 200, body = FleetAgentList), (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn agents(State(st): State<AppState>) -> Result<Json<FleetAgentList>, ApiError> {
    let st2 = st.clone();
    let now = palisade_core::Clock::now(&palisade_core::SystemClock);
    let rows = tokio::task::spawn_blocking(move || {
        st2.fleet
            .with(|s| palisade_store::fleet::agent_reports(s, now))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::from)?;
    Ok(Json(FleetAgentList {
        items: rows.into_iter().map(FleetAgentDto::from).collect(),
    }))
}
