//! Read views over a fleet server's tables for the HTTP API (issue 16 item 8): events with
//! the host they came from (and a host filter), events per host, the fleet ban log newest
//! first with a host filter. Written once over the two-backend [`Sql`] layer of the parent
//! module, like the rest of [`crate::fleet`].

use super::{log_row, FleetLogEntry, FleetStore, Sql, Val, LOG_COLS};
use crate::common::{clean, ip_text, RawEvent};
use crate::{EventQuery, StoreError, StoredEvent};
use palisade_core::Timestamp;

/// Which host's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostFilter {
    /// This host's own events (`host` NULL).
    Local,
    /// The events an agent shipped (`host` = its name).
    Agent(String),
}

/// A stored event and the host it came from (`None` = this host).
#[derive(Clone, Debug)]
pub struct HostEvent {
    /// The event.
    pub stored: StoredEvent,
    /// The agent it came from; `None` = this host.
    pub host: Option<String>,
}

/// Events since some time, per host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCount {
    /// The agent; `None` = this host.
    pub host: Option<String>,
    /// Events.
    pub events: u64,
}

/// A page of the fleet ban log.
#[derive(Clone, Debug, Default)]
pub struct FleetLogQuery {
    /// Only entries an agent took (origin) or that apply to it (scope).
    pub host: Option<String>,
    /// Only entries with `seq` below this (cursor, newest first).
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// The views (on top of [`FleetStore`], same connection).
pub trait FleetViews: FleetStore {
    /// Events as [`crate::Store::events`] selects them (newest first, same filters and
    /// cursor), with their host, and only those of `host` when given.
    fn host_events(
        &mut self,
        q: &EventQuery,
        host: Option<&HostFilter>,
    ) -> Result<Vec<HostEvent>, StoreError>;
    /// Events at or after `since`, per host (this host first, then agents by name).
    fn host_counts(&mut self, since: Timestamp) -> Result<Vec<HostCount>, StoreError>;
    /// Fleet ban log entries, newest first.
    fn fleet_log(&mut self, q: &FleetLogQuery) -> Result<Vec<FleetLogEntry>, StoreError>;
    /// Agents' events (`host` not NULL) with id > `after`, oldest first, at most `limit`.
    fn agent_events_after(&mut self, after: i64, limit: u32) -> Result<Vec<HostEvent>, StoreError>;
    /// The newest event id (0 when none).
    fn events_head(&mut self) -> Result<i64, StoreError>;
    /// The same connection as a [`FleetStore`].
    fn as_fleet(&mut self) -> &mut dyn FleetStore;
}

const HOST_EVENT_COLS: &str =
    "id, time, jail, filter, rule, ip, failure, username, fields, evidence, host";

fn q_host_events(
    db: &mut dyn Sql,
    q: &EventQuery,
    host: Option<&HostFilter>,
) -> Result<Vec<HostEvent>, StoreError> {
    let mut conds: Vec<String> = Vec::new();
    let mut p: Vec<Val> = Vec::new();
    let bind = |v: Val, p: &mut Vec<Val>| {
        p.push(v);
        format!("${}", p.len())
    };
    if let Some(ip) = q.ip {
        conds.push(format!("ip = {}", bind(Val::T(ip_text(ip)), &mut p)));
    }
    if let Some(jail) = &q.jail {
        conds.push(format!(
            "jail = {}",
            bind(Val::T(clean(jail).into_owned()), &mut p)
        ));
    }
    if let Some(t) = q.since {
        conds.push(format!("time >= {}", bind(Val::I(t.0), &mut p)));
    }
    if let Some(t) = q.until {
        conds.push(format!("time < {}", bind(Val::I(t.0), &mut p)));
    }
    if let Some(id) = q.before_id {
        conds.push(format!("id < {}", bind(Val::I(id), &mut p)));
    }
    match host {
        None => {}
        Some(HostFilter::Local) => conds.push("host IS NULL".into()),
        Some(HostFilter::Agent(name)) => {
            conds.push(format!("host = {}", bind(Val::T(name.clone()), &mut p)))
        }
    }
    let limit = bind(
        Val::I(i64::from(
            q.limit.unwrap_or(crate::common::DEFAULT_EVENT_LIMIT),
        )),
        &mut p,
    );
    let wher = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let sql = format!("SELECT {HOST_EVENT_COLS} FROM events{wher} ORDER BY id DESC LIMIT {limit}");
    db.rows(&sql, &p)?.iter().map(|r| host_event(r)).collect()
}

fn host_event(r: &[Val]) -> Result<HostEvent, StoreError> {
    let raw = RawEvent {
        id: r[0].i()?,
        time: r[1].i()?,
        jail: r[2].t()?,
        filter: r[3].t()?,
        rule: r[4].t()?,
        ip: r[5].t()?,
        failure: r[6].i()? != 0,
        user: r[7].ot()?,
        fields: r[8].t()?,
        evidence: r[9].ot()?,
    };
    Ok(HostEvent {
        stored: raw.decode()?,
        host: r[10].ot()?,
    })
}

fn q_host_counts(db: &mut dyn Sql, since: Timestamp) -> Result<Vec<HostCount>, StoreError> {
    let mut out: Vec<HostCount> = db
        .rows(
            "SELECT host, COUNT(*) FROM events WHERE time >= $1 GROUP BY host",
            &[Val::I(since.0)],
        )?
        .iter()
        .map(|r| {
            Ok(HostCount {
                host: r[0].ot()?,
                events: r[1].i()?.max(0) as u64,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    out.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(out)
}

fn q_fleet_log(db: &mut dyn Sql, q: &FleetLogQuery) -> Result<Vec<FleetLogEntry>, StoreError> {
    let limit = q.limit.clamp(1, 10_000);
    let mut out = Vec::new();
    let mut before = q.before_seq.unwrap_or(i64::MAX);
    // Candidates by SQL (a superset when filtering by host: LIKE wildcards in a name only add
    // rows), the exact test in Rust; pages until `limit` entries or the log's start.
    loop {
        let rows = match &q.host {
            None => db.rows(
                &format!(
                    "SELECT {LOG_COLS} FROM fleet_decisions WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
                ),
                &[Val::I(before), Val::I(i64::from(limit))],
            )?,
            Some(h) => {
                let quoted = serde_json::to_string(h).expect("a string serialises");
                db.rows(
                    &format!(
                        "SELECT {LOG_COLS} FROM fleet_decisions WHERE seq < $1
                           AND (origin = $3 OR scope IS NULL OR scope LIKE $4)
                         ORDER BY seq DESC LIMIT $2"
                    ),
                    &[
                        Val::I(before),
                        Val::I(i64::from(limit)),
                        Val::T(h.clone()),
                        Val::T(format!("%{quoted}%")),
                    ],
                )?
            }
        };
        let n = rows.len();
        for r in &rows {
            let e = log_row(r)?;
            before = e.seq;
            let keep = match &q.host {
                None => true,
                Some(h) => e.origin.as_deref() == Some(h.as_str()) || e.applies_to(h),
            };
            if keep {
                out.push(e);
                if out.len() == limit as usize {
                    return Ok(out);
                }
            }
        }
        if n < limit as usize {
            return Ok(out);
        }
    }
}

macro_rules! views {
    ($db:expr) => {
        fn host_events(
            &mut self,
            q: &EventQuery,
            host: Option<&HostFilter>,
        ) -> Result<Vec<HostEvent>, StoreError> {
            q_host_events(&mut $db(self)?, q, host)
        }
        fn host_counts(&mut self, since: Timestamp) -> Result<Vec<HostCount>, StoreError> {
            q_host_counts(&mut $db(self)?, since)
        }
        fn fleet_log(&mut self, q: &FleetLogQuery) -> Result<Vec<FleetLogEntry>, StoreError> {
            q_fleet_log(&mut $db(self)?, q)
        }
        fn agent_events_after(
            &mut self,
            after: i64,
            limit: u32,
        ) -> Result<Vec<HostEvent>, StoreError> {
            let db = &mut $db(self)?;
            let rows = db.rows(
                &format!(
                    "SELECT {HOST_EVENT_COLS} FROM events WHERE id > $1 AND host IS NOT NULL
                     ORDER BY id LIMIT $2"
                ),
                &[Val::I(after), Val::I(i64::from(limit))],
            )?;
            rows.iter().map(|r| host_event(r)).collect()
        }
        fn events_head(&mut self) -> Result<i64, StoreError> {
            $db(self)?.one_i("SELECT COALESCE(MAX(id), 0) FROM events", &[])
        }
        fn as_fleet(&mut self) -> &mut dyn FleetStore {
            self
        }
    };
}

mod lite {
    use super::*;
    use crate::fleet::Lite;
    use crate::sqlite::SqliteStore;

    fn db(s: &mut SqliteStore) -> Result<Lite<'_>, StoreError> {
        Ok(Lite(&s.conn))
    }

    impl FleetViews for SqliteStore {
        views!(db);
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use crate::fleet::Pg;
    use crate::postgres::PgStore;

    fn db(s: &mut PgStore) -> Result<Pg<'_, ::postgres::Client>, StoreError> {
        s.ensure_connected()?;
        Ok(Pg(&mut s.client))
    }

    impl FleetViews for PgStore {
        views!(db);
    }
}
