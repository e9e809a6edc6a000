//! The embedded SQLite backend (default).
//!
//! One connection per store. WAL journal so readers (the CLI, the API) never block the daemon's
//! writer; `synchronous=NORMAL` (durable at checkpoints, never corrupt, a power cut may lose the
//! last commits) because the firewall, not the store, is the source of truth for enforcement;
//! a busy timeout so the daemon and a CLI invocation sharing the file wait for each other
//! instead of failing. Writes use `BEGIN IMMEDIATE`, which takes the write lock up front and so
//! cannot hit SQLite's "upgrade a read transaction" deadlock.

use crate::common::{
    self, canonical_net, clean, count_u32, decisions_sql, events_sql, fields_to_json,
    net_key_range, single_address, BatchPlan, Dialect, Param, RawDecision, RawEvent, Sample,
    DECISION_COLS,
};
use crate::{DecisionQuery, EventQuery, IpHistory, Store, StoreError, StoredDecision, StoredEvent};
use ipnet::IpNet;
use palisade_core::{canonical_ip, Clock, Decision, Event, SystemClock, Timestamp};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{
    params, params_from_iter, Connection, OpenFlags, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Forward-only migrations, applied in order; the last one is the schema this binary speaks.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_init.sql"))];

/// Schema version this binary creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend {
            backend: "sqlite",
            message: e.to_string(),
        }
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::TextList(list) => ToSqlOutput::Owned(Value::Text(
                serde_json::to_string(list).expect("a list of strings always serialises"),
            )),
        })
    }
}

/// A Palisade store in one SQLite database file (or in memory).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies pending
    /// migrations. The file's directory must exist: a missing directory usually means a
    /// mistyped path or an unprovisioned state directory, which creating silently would hide.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                return Err(StoreError::Backend {
                    backend: "sqlite",
                    message: format!(
                        "cannot open {}: directory {} does not exist (create it first)",
                        path.display(),
                        dir.display()
                    ),
                });
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Backend {
            backend: "sqlite",
            message: format!("cannot open {}: {e}", path.display()),
        })?;
        Self::init(conn)
    }

    /// Opens a private in-memory database (tests, dry runs); it vanishes when dropped.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Returns the resulting mode: `wal`, or `memory` for in-memory databases.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        Ok(SqliteStore { conn })
    }

    fn write_tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// Applies pending migrations in one immediate transaction (so two processes opening a fresh
/// file at once serialise: the second sees the first's work and does nothing).
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version INTEGER PRIMARY KEY,
             applied INTEGER NOT NULL
         ) STRICT;",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    common::check_version(current, SCHEMA_VERSION)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied) VALUES (?1, ?2)",
            params![version, SystemClock.now().0],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn raw_event(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        id: r.get(0)?,
        time: r.get(1)?,
        jail: r.get(2)?,
        filter: r.get(3)?,
        rule: r.get(4)?,
        ip: r.get(5)?,
        failure: r.get(6)?,
        user: r.get(7)?,
        fields: r.get(8)?,
        evidence: r.get(9)?,
    })
}

fn raw_decision(r: &Row<'_>) -> rusqlite::Result<RawDecision> {
    Ok(RawDecision {
        id: r.get(0)?,
        target: r.get(1)?,
        jail: r.get(2)?,
        origin: r.get(3)?,
        reason: r.get(4)?,
        created: r.get(5)?,
        expires: r.get(6)?,
        simulated: r.get(7)?,
        level: r.get(8)?,
        status: r.get(9)?,
    })
}

/// Credits a new ban to the history of the address(es) it covers (see
/// [`Store::insert_decision`]).
fn credit_ban(tx: &Transaction<'_>, target: &IpNet, created: Timestamp) -> Result<(), StoreError> {
    match single_address(target) {
        Some(ip) => {
            tx.prepare_cached(
                "INSERT INTO ip_history
                     (ip, ip_key, first_seen, last_seen, failures, times_banned, sample_count)
                 VALUES (?1, ?2, ?3, ?3, 0, 1, 0)
                 ON CONFLICT (ip) DO UPDATE SET times_banned = ip_history.times_banned + 1",
            )?
            .execute(params![ip.to_string(), common::ip_key(ip), created.0])?;
        }
        None => {
            let (lo, hi) = net_key_range(target);
            tx.prepare_cached(
                "UPDATE ip_history SET times_banned = times_banned + 1
                 WHERE ip_key BETWEEN ?1 AND ?2",
            )?
            .execute(params![lo, hi])?;
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&mut self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?)
    }

    fn record_events(&mut self, jail: &str, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut plan = BatchPlan::new(events);
        let jail = clean(jail);
        let tx = self.write_tx()?;
        {
            let mut get = tx
                .prepare_cached("SELECT sample_hour, sample_count FROM ip_history WHERE ip = ?1")?;
            for ip in &mut plan.ips {
                if let Some(s) = get
                    .query_row([&ip.text], |r| {
                        Ok(Sample {
                            hour: r.get(0)?,
                            count: r.get(1)?,
                        })
                    })
                    .optional()?
                {
                    ip.sample = s;
                }
            }
        }
        plan.sample();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events
                     (time, jail, filter, rule, ip, failure, username, fields, evidence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for row in &plan.rows {
                let e = row.event;
                insert.execute(params![
                    e.time.0,
                    jail,
                    clean(&e.filter),
                    clean(&e.rule),
                    plan.ips[row.ip].text,
                    e.failure,
                    e.user.as_deref().map(clean),
                    fields_to_json(&e.fields),
                    row.keep_evidence.then(|| clean(&e.evidence)),
                ])?;
            }
            let mut upsert = tx.prepare_cached(
                "INSERT INTO ip_history (ip, ip_key, first_seen, last_seen, failures,
                                         times_banned, sample_hour, sample_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)
                 ON CONFLICT (ip) DO UPDATE SET
                     first_seen = MIN(ip_history.first_seen, excluded.first_seen),
                     last_seen = MAX(ip_history.last_seen, excluded.last_seen),
                     failures = ip_history.failures + excluded.failures,
                     sample_hour = excluded.sample_hour,
                     sample_count = excluded.sample_count",
            )?;
            for ip in &plan.ips {
                upsert.execute(params![
                    ip.text,
                    ip.key,
                    ip.first,
                    ip.last,
                    ip.failures,
                    ip.sample.hour,
                    ip.sample.count,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn events(&mut self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let (sql, params) = events_sql(Dialect::Sqlite, q);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(params.iter()), raw_event)?;
        rows.map(|r| r?.decode()).collect()
    }

    fn insert_decision(&mut self, d: &Decision) -> Result<i64, StoreError> {
        let target = canonical_net(&d.target);
        let tx = self.write_tx()?;
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO decisions (target, jail, origin, reason, created, expires,
                                        simulated, level, status, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?5)
                 RETURNING id",
            )?
            .query_row(
                params![
                    target.to_string(),
                    clean(&d.jail),
                    d.origin.as_str(),
                    clean(&d.reason),
                    d.created.0,
                    d.expires.map(|t| t.0),
                    d.simulated,
                    i64::from(d.level),
                ],
                |r| r.get(0),
            )?;
        credit_ban(&tx, &target, d.created)?;
        tx.commit()?;
        Ok(id)
    }

    fn decisions(&mut self, q: &DecisionQuery) -> Result<Vec<StoredDecision>, StoreError> {
        let (sql, params) = decisions_sql(Dialect::Sqlite, q);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(params.iter()), raw_decision)?;
        rows.map(|r| r?.decode()).collect()
    }

    fn revoke_decision(&mut self, id: i64) -> Result<Option<Decision>, StoreError> {
        let raw = self
            .conn
            .prepare_cached(&format!(
                "UPDATE decisions SET status = 'revoked', updated = ?2
                 WHERE id = ?1 AND status = 'active'
                 RETURNING {DECISION_COLS}"
            ))?
            .query_row(params![id, SystemClock.now().0], raw_decision)
            .optional()?;
        raw.map(|r| r.decode().map(|s| s.decision)).transpose()
    }

    fn expire_decisions(&mut self, now: Timestamp) -> Result<Vec<Decision>, StoreError> {
        let raw = self
            .conn
            .prepare_cached(&format!(
                "UPDATE decisions SET status = 'expired', updated = ?1
                 WHERE status = 'active' AND expires <= ?1
                 RETURNING {DECISION_COLS}"
            ))?
            .query_map([now.0], raw_decision)?
            .collect::<Result<Vec<_>, _>>()?;
        common::decode_changed(raw)
    }

    fn ban_count(&mut self, target: &IpNet, since: Timestamp) -> Result<u32, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM decisions WHERE target = ?1 AND created >= ?2")?
            .query_row(params![canonical_net(target).to_string(), since.0], |r| {
                r.get(0)
            })?;
        Ok(count_u32(n))
    }

    fn ip_history(&mut self, ip: IpAddr) -> Result<Option<IpHistory>, StoreError> {
        let ip = canonical_ip(ip);
        let row = self
            .conn
            .prepare_cached(
                "SELECT first_seen, last_seen, failures, times_banned
                 FROM ip_history WHERE ip = ?1",
            )?
            .query_row([ip.to_string()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()?;
        Ok(row.map(|(first, last, failures, banned)| IpHistory {
            ip,
            first_seen: Timestamp(first),
            last_seen: Timestamp(last),
            failures: failures.max(0) as u64,
            times_banned: banned.max(0) as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_lookup_uses_the_target_index() {
        let s = SqliteStore::open_in_memory().unwrap();
        let (sql, params) = decisions_sql(
            Dialect::Sqlite,
            &DecisionQuery {
                target: Some("1.2.3.4/32".parse().unwrap()),
                ..Default::default()
            },
        );
        let mut stmt = s
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(params_from_iter(params.iter()), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("decisions_target")),
            "{plan:?}"
        );
    }

    #[test]
    fn pragmas_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("p.db")).unwrap();
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = s
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        let fk: i64 = s
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, fk), ("wal", 1, 1));
    }
}
