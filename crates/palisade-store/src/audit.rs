//! Cloud-audit persistence: runs, open findings and events, in the same database as the rest
//! (SQLite or PostgreSQL) with their own migration track (`audit_schema_version`), so the
//! audit tables evolve without renumbering the main schema. Findings and events are stored
//! as JSON bodies beside the columns they are queried by; the audit crate owns their shape.

use crate::{StoreError, StoreUrl};

/// Migrations of the audit tables, per backend (forward only).
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE audit_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started TEXT NOT NULL,
        finished TEXT NOT NULL,
        accounts TEXT NOT NULL,
        new_count INTEGER NOT NULL,
        changed_count INTEGER NOT NULL,
        resolved_count INTEGER NOT NULL,
        errored_count INTEGER NOT NULL,
        errors TEXT NOT NULL
    );
    CREATE TABLE audit_findings (
        key TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        severity TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX audit_findings_severity ON audit_findings (severity);
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES audit_runs (id),
        time TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        severity TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX audit_events_key ON audit_events (key);
    CREATE INDEX audit_events_run ON audit_events (run_id);",
)];

#[cfg(feature = "postgres")]
const PG_MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE audit_runs (
        id BIGSERIAL PRIMARY KEY,
        started TEXT NOT NULL,
        finished TEXT NOT NULL,
        accounts TEXT NOT NULL,
        new_count BIGINT NOT NULL,
        changed_count BIGINT NOT NULL,
        resolved_count BIGINT NOT NULL,
        errored_count BIGINT NOT NULL,
        errors TEXT NOT NULL
    );
    CREATE TABLE audit_findings (
        key TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        severity TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX audit_findings_severity ON audit_findings (severity);
    CREATE TABLE audit_events (
        id BIGSERIAL PRIMARY KEY,
        run_id BIGINT NOT NULL REFERENCES audit_runs (id),
        time TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        severity TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX audit_events_key ON audit_events (key);
    CREATE INDEX audit_events_run ON audit_events (run_id);",
)];

/// Newest audit schema this binary knows.
pub const AUDIT_SCHEMA_VERSION: i64 = SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.len() - 1].0;

/// One run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRun {
    /// Row id (set by the store).
    pub id: i64,
    /// Start (RFC 3339).
    pub started: String,
    /// End (RFC 3339).
    pub finished: String,
    /// Accounts read, comma-separated.
    pub accounts: String,
    /// `new` events.
    pub new: i64,
    /// `changed` events.
    pub changed: i64,
    /// `resolved` events.
    pub resolved: i64,
    /// Checks that errored.
    pub errored: i64,
    /// Error messages (JSON array).
    pub errors: String,
}

/// One open finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFinding {
    /// Stable key.
    pub key: String,
    /// Account id.
    pub account: String,
    /// Region or `global`.
    pub region: String,
    /// Rule id.
    pub rule: String,
    /// Resource.
    pub subject: String,
    /// Severity.
    pub severity: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// The whole finding as JSON.
    pub body: String,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Run it belongs to (set by the store on insert).
    pub run_id: i64,
    /// Time (RFC 3339).
    pub time: String,
    /// `new`, `changed`, `resolved`.
    pub kind: String,
    /// Finding key.
    pub key: String,
    /// Rule id.
    pub rule: String,
    /// Resource.
    pub subject: String,
    /// Severity.
    pub severity: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// The whole event as JSON.
    pub body: String,
}

/// Audit persistence, kept apart from [`crate::Store`] (its own connection and migrations).
pub trait AuditStore: Send {
    /// Every open finding.
    fn open_findings(&mut self) -> Result<Vec<AuditFinding>, StoreError>;
    /// Records a run in one transaction: the run row, its events, and the open findings
    /// replaced by `open`. Returns the run id.
    fn record_run(
        &mut self,
        run: &AuditRun,
        events: &[AuditEvent],
        open: &[AuditFinding],
    ) -> Result<i64, StoreError>;
    /// The latest runs, newest first.
    fn runs(&mut self, limit: u32) -> Result<Vec<AuditRun>, StoreError>;
    /// Events, newest first; only those of `key` when given.
    fn events(&mut self, key: Option<&str>, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;
}

/// Opens the audit tables of the store `url` names (creating or migrating them).
pub fn open(url: &str) -> Result<Box<dyn AuditStore>, StoreError> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            let conn = rusqlite::Connection::open(&path).map_err(|e| StoreError::Backend {
                backend: "sqlite",
                message: format!("cannot open {}: {e}", path.display()),
            })?;
            Ok(Box::new(SqliteAudit::init(conn)?))
        }
        StoreUrl::SqliteMemory => Ok(Box::new(SqliteAudit::init(
            rusqlite::Connection::open_in_memory()?,
        )?)),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(s) => Ok(Box::new(PgAudit::connect(&s)?)),
        #[cfg(not(feature = "postgres"))]
        StoreUrl::Postgres(_) => Err(StoreError::NotCompiled("postgres")),
    }
}

fn too_new(found: i64) -> Result<(), StoreError> {
    if found > AUDIT_SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: AUDIT_SCHEMA_VERSION,
        });
    }
    Ok(())
}

struct SqliteAudit {
    conn: rusqlite::Connection,
}

impl SqliteAudit {
    fn init(mut conn: rusqlite::Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS audit_schema_version (
                version INTEGER PRIMARY KEY, applied TEXT NOT NULL)",
        )?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM audit_schema_version",
            [],
            |r| r.get(0),
        )?;
        too_new(current)?;
        for (v, sql) in SQLITE_MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO audit_schema_version (version, applied) VALUES (?1, datetime('now'))",
                [v],
            )?;
        }
        tx.commit()?;
        Ok(SqliteAudit { conn })
    }
}

const FINDING_COLS: &str =
    "key, account, region, rule, subject, severity, fingerprint, first_seen, last_seen, body";
const EVENT_COLS: &str = "run_id, time, kind, key, rule, subject, severity, fingerprint, body";
const RUN_COLS: &str = "id, started, finished, accounts, new_count, changed_count, \
                        resolved_count, errored_count, errors";

fn sqlite_finding(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditFinding> {
    Ok(AuditFinding {
        key: r.get(0)?,
        account: r.get(1)?,
        region: r.get(2)?,
        rule: r.get(3)?,
        subject: r.get(4)?,
        severity: r.get(5)?,
        fingerprint: r.get(6)?,
        first_seen: r.get(7)?,
        last_seen: r.get(8)?,
        body: r.get(9)?,
    })
}

impl AuditStore for SqliteAudit {
    fn open_findings(&mut self) -> Result<Vec<AuditFinding>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {FINDING_COLS} FROM audit_findings ORDER BY key"
        ))?;
        let rows = st.query_map([], sqlite_finding)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record_run(
        &mut self,
        run: &AuditRun,
        events: &[AuditEvent],
        open: &[AuditFinding],
    ) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO audit_runs (started, finished, accounts, new_count, changed_count, \
             resolved_count, errored_count, errors) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                run.started,
                run.finished,
                run.accounts,
                run.new,
                run.changed,
                run.resolved,
                run.errored,
                run.errors
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut ins = tx.prepare(&format!(
                "INSERT INTO audit_events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?;
            for e in events {
                ins.execute(rusqlite::params![
                    id,
                    e.time,
                    e.kind,
                    e.key,
                    e.rule,
                    e.subject,
                    e.severity,
                    e.fingerprint,
                    e.body
                ])?;
            }
            tx.execute("DELETE FROM audit_findings", [])?;
            let mut ins = tx.prepare(&format!(
                "INSERT INTO audit_findings ({FINDING_COLS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?;
            for f in open {
                ins.execute(rusqlite::params![
                    f.key,
                    f.account,
                    f.region,
                    f.rule,
                    f.subject,
                    f.severity,
                    f.fingerprint,
                    f.first_seen,
                    f.last_seen,
                    f.body
                ])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    fn runs(&mut self, limit: u32) -> Result<Vec<AuditRun>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {RUN_COLS} FROM audit_runs ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map([limit], |r| {
            Ok(AuditRun {
                id: r.get(0)?,
                started: r.get(1)?,
                finished: r.get(2)?,
                accounts: r.get(3)?,
                new: r.get(4)?,
                changed: r.get(5)?,
                resolved: r.get(6)?,
                errored: r.get(7)?,
                errors: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn events(&mut self, key: Option<&str>, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {EVENT_COLS} FROM audit_events WHERE (?1 IS NULL OR key = ?1) \
             ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(rusqlite::params![key, limit], |r| {
            Ok(AuditEvent {
                run_id: r.get(0)?,
                time: r.get(1)?,
                kind: r.get(2)?,
                key: r.get(3)?,
                rule: r.get(4)?,
                subject: r.get(5)?,
                severity: r.get(6)?,
                fingerprint: r.get(7)?,
                body: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(feature = "postgres")]
struct PgAudit {
    client: ::postgres::Client,
}

#[cfg(feature = "postgres")]
impl PgAudit {
    fn connect(params: &str) -> Result<Self, StoreError> {
        let mut config: ::postgres::Config = params
            .parse()
            .map_err(|_| StoreError::BadUrl(crate::redact_url(params)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let mut client = config
            .connect(::postgres::NoTls)
            .map_err(|e| StoreError::Backend {
                backend: "postgres",
                message: scrub(&e.to_string(), config.get_password()),
            })?;
        let mut tx = client.transaction()?;
        // Serialise concurrent first openers (any constant works; this one spells "audit").
        tx.execute("SELECT pg_advisory_xact_lock(6175646974)", &[])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS audit_schema_version (
                version BIGINT PRIMARY KEY, applied TEXT NOT NULL)",
        )?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM audit_schema_version",
                &[],
            )?
            .get(0);
        too_new(current)?;
        for (v, sql) in PG_MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO audit_schema_version (version, applied) VALUES ($1, now()::TEXT)",
                &[v],
            )?;
        }
        tx.commit()?;
        Ok(PgAudit { client })
    }
}

#[cfg(feature = "postgres")]
fn scrub(msg: &str, password: Option<&[u8]>) -> String {
    match password.map(String::from_utf8_lossy) {
        Some(p) if !p.is_empty() => msg.replace(p.as_ref(), "***"),
        _ => msg.to_string(),
    }
}

#[cfg(feature = "postgres")]
impl AuditStore for PgAudit {
    fn open_findings(&mut self) -> Result<Vec<AuditFinding>, StoreError> {
        let rows = self.client.query(
            &format!("SELECT {FINDING_COLS} FROM audit_findings ORDER BY key"),
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditFinding {
                key: r.get(0),
                account: r.get(1),
                region: r.get(2),
                rule: r.get(3),
                subject: r.get(4),
                severity: r.get(5),
                fingerprint: r.get(6),
                first_seen: r.get(7),
                last_seen: r.get(8),
                body: r.get(9),
            })
            .collect())
    }

    fn record_run(
        &mut self,
        run: &AuditRun,
        events: &[AuditEvent],
        open: &[AuditFinding],
    ) -> Result<i64, StoreError> {
        let mut tx = self.client.transaction()?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO audit_runs (started, finished, accounts, new_count, changed_count, \
                 resolved_count, errored_count, errors) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING id",
                &[
                    &run.started,
                    &run.finished,
                    &run.accounts,
                    &run.new,
                    &run.changed,
                    &run.resolved,
                    &run.errored,
                    &run.errors,
                ],
            )?
            .get(0);
        let ins = tx.prepare(&format!(
            "INSERT INTO audit_events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))?;
        for e in events {
            tx.execute(
                &ins,
                &[
                    &id,
                    &e.time,
                    &e.kind,
                    &e.key,
                    &e.rule,
                    &e.subject,
                    &e.severity,
                    &e.fingerprint,
                    &e.body,
                ],
            )?;
        }
        tx.execute("DELETE FROM audit_findings", &[])?;
        let ins = tx.prepare(&format!(
            "INSERT INTO audit_findings ({FINDING_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))?;
        for f in open {
            tx.execute(
                &ins,
                &[
                    &f.key,
                    &f.account,
                    &f.region,
                    &f.rule,
                    &f.subject,
                    &f.severity,
                    &f.fingerprint,
                    &f.first_seen,
                    &f.last_seen,
                    &f.body,
                ],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    fn runs(&mut self, limit: u32) -> Result<Vec<AuditRun>, StoreError> {
        let rows = self.client.query(
            &format!("SELECT {RUN_COLS} FROM audit_runs ORDER BY id DESC LIMIT $1"),
            &[&i64::from(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditRun {
                id: r.get(0),
                started: r.get(1),
                finished: r.get(2),
                accounts: r.get(3),
                new: r.get(4),
                changed: r.get(5),
                resolved: r.get(6),
                errored: r.get(7),
                errors: r.get(8),
            })
            .collect())
    }

    fn events(&mut self, key: Option<&str>, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self.client.query(
            &format!(
                "SELECT {EVENT_COLS} FROM audit_events WHERE ($1::TEXT IS NULL OR key = $1) \
                 ORDER BY id DESC LIMIT $2"
            ),
            &[&key, &i64::from(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditEvent {
                run_id: r.get(0),
                time: r.get(1),
                kind: r.get(2),
                key: r.get(3),
                rule: r.get(4),
                subject: r.get(5),
                severity: r.get(6),
                fingerprint: r.get(7),
                body: r.get(8),
            })
            .collect())
    }
}
