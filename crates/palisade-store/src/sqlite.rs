//! The embedded SQLite backend (default).
//!
//! One connection per store. WAL journal so readers (the CLI, the API) never block the daemon's
//! writer; `synchronous=NORMAL` (durable at checkpoints, never corrupt, a power cut may lose the
//! last commits) because the firewall, not the store, is the source of truth for enforcement;
//! a busy timeout so the daemon and a CLI invocation sharing the file wait for each other
//! instead of failing. Writes use `BEGIN IMMEDIATE`, which takes the write lock up front and so
//! cannot hit SQLite's "upgrade a read transaction" deadlock.

use crate::common::{
    self, canonical_net, clean, count_u32, decision_count_sql, decisions_sql, events_sql,
    fields_to_json, net_key_range, single_address, BatchPlan, Dialect, Param, RawDecision,
    RawEvent, Sample, DECISION_COLS,
};
use crate::{AllowEntry, HourCount, IpActivity, TokenRecord, UserRecord};
use crate::{DecisionQuery, EventQuery, IpHistory, Store, StoreError, StoredDecision, StoredEvent};
use ipnet::IpNet;
use palisade_core::{canonical_ip, Clock, Decision, Event, SystemClock, Timestamp};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{
    params, params_from_iter, Connection, OpenFlags, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Forward-only migrations, applied in order; the last one is the schema this binary speaks.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_server.sql")),
    (3, include_str!("../migrations/sqlite/0003_ip_rollup.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_source_positions.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_fleet.sql")),
    (6, include_str!("../migrations/sqlite/0006_retention.sql")),
];

/// Schema version this binary creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// [`Store::active_ban_counts`]: `?1` = now, `?2` = since. The `decisions_status_expires`
/// index finds the targets in force, `decisions_target` counts each.
const ACTIVE_BAN_COUNTS_SQLITE: &str = "SELECT target, COUNT(*) FROM decisions
     WHERE created >= ?2 AND target IN (SELECT target FROM decisions
         WHERE status = 'active' AND (expires IS NULL OR expires > ?1))
     GROUP BY target";

/// Bytes a write-ahead log keeps after a checkpoint (`PRAGMA journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Free pages one `PRAGMA incremental_vacuum` step gives back (16 MiB of 4 KiB pages).
const VACUUM_STEP: i64 = 4096;

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
    pub(crate) conn: Connection,
}

/// Makes the database file (it holds password hashes) readable by its owner only: creates it
/// with mode 0600 before SQLite does, so the `-wal` and `-shm` files SQLite creates next to
/// it get the same mode, and takes group and other bits off files an older version left.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = Path::new(&p);
        if let Ok(m) = std::fs::symlink_metadata(p) {
            let mode = m.permissions().mode();
            if m.is_file() && mode & 0o077 != 0 {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
    }
    Ok(())
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
        private_files(path).map_err(|e| StoreError::Backend {
            backend: "sqlite",
            message: format!("cannot create {}: {e}", path.display()),
        })?;
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
        // A new database keeps free-page pointers so retention can give deleted rows' pages
        // back to the file system (`PRAGMA incremental_vacuum`). The mode can only be chosen
        // before the first table; older files keep theirs and reuse freed pages instead,
        // which also stops them growing under steady load.
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages == 0 {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        // Returns the resulting mode: `wal`, or `memory` for in-memory databases.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // After a checkpoint, a write-ahead log that a large retention run grew is cut back.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        Ok(SqliteStore { conn })
    }

    /// Gives free pages back to the file system when the database is in incremental
    /// auto-vacuum mode (new databases), a step at a time; returns the pages freed. Other
    /// databases keep their free pages for the next inserts.
    fn release_free_pages(&mut self) -> Result<u64, StoreError> {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if mode != 2 {
            return Ok(0);
        }
        let mut freed = 0u64;
        loop {
            let free: i64 = self
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            if free == 0 {
                break;
            }
            let step = free.min(VACUUM_STEP);
            self.conn
                .execute_batch(&format!("PRAGMA incremental_vacuum({step})"))?;
            let left: i64 = self
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            if left >= free {
                break;
            }
            freed += (free - left) as u64;
            std::thread::sleep(crate::RETENTION_PAUSE);
        }
        Ok(freed)
    }

    fn write_tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// Writes a batch of one jail's events inside `tx`: event rows (evidence sampled), address
/// history and rollups. `host` is the fleet agent the events came from (`None` = local).
pub(crate) fn write_events(
    tx: &Transaction<'_>,
    jail: &str,
    events: &[Event],
    host: Option<&str>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut plan = BatchPlan::new(events);
    let jail = clean(jail);
    {
        let mut get =
            tx.prepare_cached("SELECT sample_hour, sample_count FROM ip_history WHERE ip = ?1")?;
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
                     (time, jail, filter, rule, ip, failure, username, fields, evidence, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
                host,
            ])?;
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO ip_history (ip, ip_key, first_seen, last_seen, failures,
                                         times_banned, sample_hour, sample_count, events)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8)
                 ON CONFLICT (ip) DO UPDATE SET
                     first_seen = MIN(ip_history.first_seen, excluded.first_seen),
                     last_seen = MAX(ip_history.last_seen, excluded.last_seen),
                     failures = ip_history.failures + excluded.failures,
                     events = ip_history.events + excluded.events,
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
                ip.events,
            ])?;
        }
        // Per-address rollups (schema 3), one upsert per address and per address-hour
        // of the batch rather than per event (bursts repeat the same few keys). Hours
        // are `time / 1 h` truncated, as SQL divides in the migration's backfill.
        let mut per_ip = vec![0i64; plan.ips.len()];
        let mut per_hour: BTreeMap<(usize, i64), i64> = BTreeMap::new();
        for row in &plan.rows {
            per_ip[row.ip] += 1;
            *per_hour
                .entry((row.ip, row.event.time.0 / common::HOUR_MICROS))
                .or_default() += 1;
        }
        let mut jails = tx.prepare_cached(
            "INSERT INTO ip_jail_events (ip, jail, events) VALUES (?1, ?2, ?3)
                 ON CONFLICT (ip, jail) DO UPDATE SET events = events + excluded.events",
        )?;
        for (ip, n) in plan.ips.iter().zip(&per_ip) {
            jails.execute(params![ip.text, jail, n])?;
        }
        let mut hours = tx.prepare_cached(
            "INSERT INTO ip_event_hourly (ip, hour, events) VALUES (?1, ?2, ?3)
                 ON CONFLICT (ip, hour) DO UPDATE SET events = events + excluded.events",
        )?;
        for ((ip, hour), n) in per_hour {
            hours.execute(params![plan.ips[ip].text, hour, n])?;
        }
    }
    Ok(())
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

/// Reads an `api_tokens` row (server queries).
fn sqlite_token(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        scope: r.get(2)?,
        token_hash: r.get(3)?,
        created: Timestamp(r.get(4)?),
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
        let tx = self.write_tx()?;
        write_events(&tx, jail, events, None)?;
        tx.commit()?;
        Ok(())
    }

    fn record_batch(
        &mut self,
        events: &[(&str, &[Event])],
        positions: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        for (jail, evs) in events {
            write_events(&tx, jail, evs, None)?;
        }
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO source_positions (source, position, updated) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source) DO UPDATE SET position = excluded.position,
                                                    updated = excluded.updated",
            )?;
            let now = SystemClock.now().0;
            for (source, pos) in positions {
                put.execute(params![source, pos, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn maintain(
        &mut self,
        now: Timestamp,
        retention: Option<Duration>,
    ) -> Result<crate::Maintenance, StoreError> {
        let mut out = crate::Maintenance {
            cutoff: crate::retention_cutoff(now, retention),
            ..Default::default()
        };
        let Some(cutoff) = out.cutoff else {
            return Ok(out);
        };
        // Bounded batches, one short transaction each: the daemon's writer waits at most one
        // batch for the lock, and the pause lets it in between.
        for batch in 1.. {
            let tx = self.write_tx()?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM events WHERE id IN
                         (SELECT id FROM events WHERE time < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoff.0, crate::RETENTION_BATCH as i64])?;
            tx.commit()?;
            out.rows_deleted += n as u64;
            if n < crate::RETENTION_BATCH {
                break;
            }
            if batch == crate::RETENTION_MAX_BATCHES {
                out.more = true;
                return Ok(out);
            }
            std::thread::sleep(crate::RETENTION_PAUSE);
        }
        let hour = cutoff.0.div_euclid(common::HOUR_MICROS);
        for batch in 1.. {
            let tx = self.write_tx()?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM ip_event_hourly WHERE (ip, hour) IN
                         (SELECT ip, hour FROM ip_event_hourly WHERE hour < ?1 LIMIT ?2)",
                )?
                .execute(params![hour, crate::RETENTION_BATCH as i64])?;
            tx.commit()?;
            out.timeline_rows_deleted += n as u64;
            if n < crate::RETENTION_BATCH {
                break;
            }
            if batch == crate::RETENTION_MAX_BATCHES {
                out.more = true;
                return Ok(out);
            }
            std::thread::sleep(crate::RETENTION_PAUSE);
        }
        if out.rows_deleted + out.timeline_rows_deleted > 0 {
            out.pages_freed = self.release_free_pages()?;
        }
        Ok(out)
    }

    fn fleet_views(&mut self) -> &mut dyn crate::fleet::views::FleetViews {
        self
    }

    fn source_positions(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT source, position FROM source_positions ORDER BY source")?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
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

    fn active_decisions(&mut self, now: Timestamp) -> Result<Vec<Decision>, StoreError> {
        // No ORDER BY: sorting 100k wide rows in a temporary B-tree costs more than reading
        // them; they are sorted below. Text columns are borrowed, not copied, where only
        // parsed.
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, target, jail, origin, reason, created, expires, simulated, level
             FROM decisions WHERE status = 'active' AND (expires IS NULL OR expires > ?1)",
        )?;
        let mut rows = stmt.query([now.0])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let corrupt = |what: &str| StoreError::Corrupt(format!("decisions.{what} (id {id})"));
            let text = |i: usize| -> Result<&str, StoreError> {
                Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
            };
            let target = text(1)?.parse::<IpNet>().map_err(|_| corrupt("target"))?;
            let origin = text(3)?.parse().map_err(|_| corrupt("origin"))?;
            let level = u32::try_from(r.get::<_, i64>(8)?).map_err(|_| corrupt("level"))?;
            out.push(Decision {
                id,
                target,
                jail: r.get(2)?,
                origin,
                reason: r.get(4)?,
                created: Timestamp(r.get(5)?),
                expires: r.get::<_, Option<i64>>(6)?.map(Timestamp),
                simulated: r.get(7)?,
                level,
            });
        }
        out.sort_unstable_by_key(|d| std::cmp::Reverse((d.created, d.id)));
        Ok(out)
    }

    fn expire_decisions_quietly(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE decisions SET status = 'expired', updated = ?1
                 WHERE status = 'active' AND expires <= ?1",
            )?
            .execute([now.0])?;
        Ok(n as u64)
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

    fn active_ban_counts(
        &mut self,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<Vec<(IpNet, u32)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(ACTIVE_BAN_COUNTS_SQLITE)?;
        let rows = stmt.query_map([now.0, since.0], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        rows.map(|r| {
            let (target, n) = r?;
            let net = target
                .parse::<IpNet>()
                .map_err(|_| StoreError::Corrupt(format!("decisions.target {target:?}")))?;
            Ok((net, count_u32(n)))
        })
        .collect()
    }

    fn ip_history(&mut self, ip: IpAddr) -> Result<Option<IpHistory>, StoreError> {
        let ip = canonical_ip(ip);
        let row = self
            .conn
            .prepare_cached(
                "SELECT first_seen, last_seen, failures, times_banned, events
                 FROM ip_history WHERE ip = ?1",
            )?
            .query_row([ip.to_string()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .optional()?;
        Ok(
            row.map(|(first, last, failures, banned, events)| IpHistory {
                ip,
                first_seen: Timestamp(first),
                last_seen: Timestamp(last),
                failures: failures.max(0) as u64,
                times_banned: banned.max(0) as u64,
                events: events.max(0) as u64,
            }),
        )
    }

    // --- server queries ---
    fn event_hours(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<HourCount>, StoreError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT hour, jail, events, failures FROM event_hourly
                 WHERE hour >= ?1 AND hour < ?2 ORDER BY hour, jail",
            )?
            .query_map(
                params![common::hour_ceil(since), common::hour_ceil(until)],
                |r| {
                    Ok(common::hour_count(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn ban_hours(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<HourCount>, StoreError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT created / 3600000000 AS h, COUNT(*) FROM decisions
                 WHERE created >= ?1 AND created < ?2 GROUP BY h ORDER BY h",
            )?
            .query_map(params![since.0, until.0], |r| {
                Ok(common::hour_count(r.get(0)?, String::new(), r.get(1)?, 0))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn top_offenders(
        &mut self,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<IpHistory>, StoreError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT ip, first_seen, last_seen, failures, times_banned, events
                 FROM ip_history INDEXED BY ip_history_failures
                 WHERE last_seen >= ?1 ORDER BY failures DESC LIMIT ?2",
            )?
            .query_map(params![since.0, i64::from(limit)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(ip, a, b, c, d, e)| common::history_row(&ip, a, b, c, d, e))
            .collect()
    }

    fn decision_count(&mut self, q: &DecisionQuery) -> Result<u64, StoreError> {
        let (sql, params) = decision_count_sql(Dialect::Sqlite, q);
        let n: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params_from_iter(params.iter()), |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn active_decision_count(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM decisions
                 WHERE status = 'active' AND (expires IS NULL OR expires > ?1)",
            )?
            .query_row([now.0], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn decision(&mut self, id: i64) -> Result<Option<StoredDecision>, StoreError> {
        let raw = self
            .conn
            .prepare_cached(&format!(
                "SELECT {DECISION_COLS} FROM decisions WHERE id = ?1"
            ))?
            .query_row([id], raw_decision)
            .optional()?;
        raw.map(RawDecision::decode).transpose()
    }

    fn ip_activity(&mut self, ip: IpAddr, since: Timestamp) -> Result<IpActivity, StoreError> {
        let ip = common::ip_text(ip);
        let jails = self
            .conn
            .prepare_cached(
                "SELECT jail, events FROM ip_jail_events WHERE ip = ?1
                 ORDER BY events DESC, jail",
            )?
            .query_map([&ip], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .map(|r| r.map(|(j, n)| (j, n.max(0) as u64)))
            .collect::<Result<Vec<_>, _>>()?;
        let hours = self
            .conn
            .prepare_cached(
                "SELECT hour, events FROM ip_event_hourly
                 WHERE ip = ?1 AND hour >= ?2 ORDER BY hour",
            )?
            .query_map(params![&ip, since.0.div_euclid(common::HOUR_MICROS)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?
            .map(|r| r.map(|(h, n)| (common::hour_start(h), n.max(0) as u64)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IpActivity { jails, hours })
    }

    fn allowlist(&mut self) -> Result<Vec<AllowEntry>, StoreError> {
        let rows = self
            .conn
            .prepare_cached("SELECT id, net, comment, created FROM allowlist ORDER BY id")?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, net, comment, created)| common::allow_entry(id, &net, comment, created))
            .collect()
    }

    fn allowlist_add(
        &mut self,
        net: &IpNet,
        comment: &str,
        now: Timestamp,
    ) -> Result<AllowEntry, StoreError> {
        let net = canonical_net(net);
        let (id, created): (i64, i64) = self
            .conn
            .prepare_cached(
                "INSERT INTO allowlist (net, comment, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT (net) DO UPDATE SET comment = excluded.comment
                 RETURNING id, created",
            )?
            .query_row(params![net.to_string(), clean(comment), now.0], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok(AllowEntry {
            id,
            net,
            comment: clean(comment).into_owned(),
            created: Timestamp(created),
        })
    }

    fn allowlist_remove(&mut self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM allowlist WHERE id = ?1")?
            .execute([id])?
            > 0)
    }

    fn user_count(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM users")?
            .query_row([], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn user(&mut self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, password_hash, created, last_login FROM users WHERE name = ?1",
            )?
            .query_row([name], |r| {
                Ok(UserRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    password_hash: r.get(2)?,
                    created: Timestamp(r.get(3)?),
                    last_login: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                })
            })
            .optional()?)
    }

    fn user_set(
        &mut self,
        name: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
            )?
            .execute(params![clean(name), password_hash, now.0])?;
        Ok(())
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, password_hash, created, last_login FROM users ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(UserRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                password_hash: r.get(2)?,
                created: Timestamp(r.get(3)?),
                last_login: r.get::<_, Option<i64>>(4)?.map(Timestamp),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn user_remove(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM users WHERE name = ?1")?
            .execute([name])?
            > 0)
    }

    fn user_logged_in(&mut self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE users SET last_login = ?2 WHERE name = ?1")?
            .execute(params![name, now.0])?;
        Ok(())
    }

    fn token_add(
        &mut self,
        name: &str,
        scope: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "INSERT INTO api_tokens (name, scope, token_hash, created)
                 VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )?
            .query_row(params![clean(name), scope, token_hash, now.0], |r| r.get(0))?)
    }

    fn token_by_hash(&mut self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, scope, token_hash, created FROM api_tokens
                 WHERE token_hash = ?1",
            )?
            .query_row([token_hash], sqlite_token)
            .optional()?)
    }

    fn tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, scope, token_hash, created FROM api_tokens ORDER BY id",
            )?
            .query_map([], sqlite_token)?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn token_remove(&mut self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM api_tokens WHERE id = ?1")?
            .execute([id])?
            > 0)
    }
    // --- end server queries ---

    // --- report queries ---
    fn period_summary(
        &mut self,
        since: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<crate::PeriodSummary, StoreError> {
        let (a, b, n) = (since.0, until.0, i64::from(limit));
        let mut out = crate::PeriodSummary::default();
        let (events, failures): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(failure), 0) FROM events WHERE time >= ?1 AND time < ?2",
            params![a, b],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        out.events = events.max(0) as u64;
        out.failures = failures.max(0) as u64;
        out.events_per_jail = self
            .conn
            .prepare_cached(
                "SELECT jail, COUNT(*) AS n FROM events WHERE time >= ?1 AND time < ?2
                 GROUP BY jail ORDER BY n DESC, jail",
            )?
            .query_map(params![a, b], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let top = self
            .conn
            .prepare_cached(
                "SELECT ip, COUNT(*) AS n FROM events WHERE time >= ?1 AND time < ?2
                 GROUP BY ip ORDER BY n DESC, ip LIMIT ?3",
            )?
            .query_map(params![a, b, n], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (ip, c) in top {
            let ip = ip
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("events.ip {ip:?}")))?;
            out.top_ips.push((ip, c));
        }
        let total: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM decisions WHERE created >= ?1 AND created < ?2",
            params![a, b],
            |r| r.get(0),
        )?;
        out.decisions_total = total.max(0) as u64;
        out.decisions = self
            .conn
            .prepare_cached(&format!(
                "SELECT {DECISION_COLS} FROM decisions WHERE created >= ?1 AND created < ?2
                 ORDER BY created DESC, id DESC LIMIT ?3"
            ))?
            .query_map(params![a, b, n], raw_decision)?
            .map(|r| r?.decode())
            .collect::<Result<Vec<_>, _>>()?;
        let rep = self
            .conn
            .prepare_cached(
                "SELECT target,
                        SUM(CASE WHEN created >= ?1 THEN 1 ELSE 0 END) AS inside,
                        COUNT(*) AS total
                 FROM decisions
                 WHERE created < ?2 AND target IN
                       (SELECT target FROM decisions WHERE created >= ?1 AND created < ?2)
                 GROUP BY target HAVING COUNT(*) > 1
                 ORDER BY total DESC, target LIMIT ?3",
            )?
            .query_map(params![a, b, n], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (t, inside, total) in rep {
            let net = t
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("decisions.target {t:?}")))?;
            out.repeat_offenders
                .push((net, inside.max(0) as u64, total.max(0) as u64));
        }
        Ok(out)
    }
    // --- end report queries ---
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
    fn database_wal_and_shm_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.db");
        let mut s = SqliteStore::open(&p).unwrap();
        s.user_set("admin", "$argon2id$x", Timestamp(1)).unwrap();
        let mode = |suffix: &str| {
            let f = dir.path().join(format!("p.db{suffix}"));
            std::fs::metadata(&f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .permissions()
                .mode()
                & 0o777
        };
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(suffix), 0o600, "p.db{suffix}");
        }
        drop(s);
        // A world-readable database left by an older version is tightened on open.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _s = SqliteStore::open(&p).unwrap();
        assert_eq!(mode(""), 0o600);
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
