//! The PostgreSQL backend (feature `postgres`), through the synchronous `postgres` client.
//!
//! Same row model and semantics as SQLite (times as BIGINT microseconds, targets as canonical
//! CIDR text), so the one storage story test covers both. Event batches are written with one
//! `INSERT … SELECT FROM UNNEST(arrays)` per 5000 rows rather than a round trip per row.
//! Statements are prepared once per connection and cached; a dropped connection is
//! re-established on the next call.

use crate::common::{
    self, canonical_net, clean, count_u32, decision_count_sql, decisions_sql, events_sql,
    fields_to_json, net_key_range, single_address, BatchPlan, Dialect, Param, RawDecision,
    RawEvent, Sample, DECISION_COLS,
};
use crate::{AllowEntry, HourCount, IpActivity, TokenRecord, UserRecord};
use crate::{DecisionQuery, EventQuery, IpHistory, Store, StoreError, StoredDecision, StoredEvent};
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Row, Statement};
use ipnet::IpNet;
use palisade_core::{canonical_ip, Clock, Decision, Event, SystemClock, Timestamp};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

/// Forward-only migrations, applied in order; the last one is the schema this binary speaks.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_server.sql")),
    (3, include_str!("../migrations/postgres/0003_ip_rollup.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_source_positions.sql"),
    ),
    (5, include_str!("../migrations/postgres/0005_fleet.sql")),
    (6, include_str!("../migrations/postgres/0006_retention.sql")),
];

/// Schema version this binary creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Advisory lock key serialising concurrent migrations of one database ("palisade" in ASCII).
const MIGRATION_LOCK: i64 = 0x7061_6c69_7361_6465;

/// Days before today for which an insert creates the missing event partition; older rows
/// (and rows more than [`crate::PARTITIONS_AHEAD`] days ahead) go to the default partition,
/// so a wild timestamp never creates a partition nothing would drop.
const PARTITION_PAST_DAYS: i64 = 3660;

/// How long dropping a partition waits for its lock on `events` before giving up until the
/// next maintenance run (a long report query must not stall the writers behind the drop).
const DROP_LOCK_TIMEOUT: &str = "5s";

/// Rows per `UNNEST` insert statement.
const CHUNK: usize = 5000;

/// Prepared statements kept per connection before the cache is reset.
const STATEMENT_CACHE: usize = 128;

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        // `Display` of the driver error is only its kind ("db error"); the server's message
        // (or the I/O error) is the source.
        let message = match std::error::Error::source(&e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        };
        StoreError::Backend {
            backend: "postgres",
            message,
        }
    }
}

/// Removes `secret` from an error message: belt and braces, should a server or driver ever
/// echo connection parameters back.
pub(crate) fn scrub(err: StoreError, secret: Option<&[u8]>) -> StoreError {
    match (err, secret) {
        (StoreError::Backend { backend, message }, Some(secret)) if !secret.is_empty() => {
            let secret = String::from_utf8_lossy(secret);
            StoreError::Backend {
                backend,
                message: message.replace(&*secret, "***"),
            }
        }
        (err, _) => err,
    }
}

/// A Palisade store in a PostgreSQL database.
pub struct PgStore {
    pub(crate) client: Client,
    config: Config,
    statements: HashMap<String, Statement>,
    /// Days (since the epoch) whose event partition this connection knows to exist.
    partitions: HashSet<i64>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's own Debug already hides the password.
        f.debug_struct("PgStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects with a connection string (`postgres://…` URL or `host=… dbname=…` key/value
    /// form; TLS is not used) and applies pending migrations. Without an explicit
    /// `connect_timeout`, connecting gives up after 10 s.
    pub fn connect(params: &str) -> Result<Self, StoreError> {
        let mut config: Config = params
            .parse()
            .map_err(|_| StoreError::BadUrl(crate::redact_url(params)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("palisade");
        }
        Self::with_config(config)
    }

    /// Connects with a prepared driver configuration and applies pending migrations.
    pub fn with_config(config: Config) -> Result<Self, StoreError> {
        let client = config
            .connect(NoTls)
            .map_err(|e| scrub(e.into(), config.get_password()))?;
        let mut store = PgStore {
            client,
            config,
            statements: HashMap::new(),
            partitions: HashSet::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Reconnects if the server closed the connection (restart, idle timeout).
    pub(crate) fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            self.client = self
                .config
                .connect(NoTls)
                .map_err(|e| scrub(e.into(), self.config.get_password()))?;
            self.statements.clear();
        }
        Ok(())
    }

    /// A prepared statement for `sql`, from the per-connection cache.
    /// The statements [`write_events`] uses.
    pub(crate) fn event_statements(&mut self) -> Result<EventStatements, StoreError> {
        Ok((
            self.statement(
                "SELECT ip, sample_hour, sample_count FROM ip_history WHERE ip = ANY($1)",
            )?,
            (
                self.statement(INSERT_EVENTS)?,
                self.statement(INSERT_EVENTS_HOSTS)?,
            ),
            self.statement(UPSERT_HISTORY)?,
        ))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        self.ensure_connected()?;
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Creates the event partitions of the days of `times` that are within the on-demand
    /// window and not known to exist, each in its own short transaction before the insert
    /// (creating one inside the insert's transaction would hold the lock on `events` until
    /// commit). A failure leaves the rows to the default partition: inserts never fail for a
    /// missing partition.
    pub(crate) fn ensure_partitions(&mut self, times: impl Iterator<Item = i64>) {
        let today = SystemClock.now().0.div_euclid(crate::DAY_MICROS);
        let window = today - PARTITION_PAST_DAYS..=today + crate::PARTITIONS_AHEAD;
        let mut days: Vec<i64> = times
            .map(|t| t.div_euclid(crate::DAY_MICROS))
            .filter(|d| window.contains(d) && !self.partitions.contains(d))
            .collect();
        days.sort_unstable();
        days.dedup();
        for day in days {
            let _ = self.create_partition(day);
        }
    }

    /// Creates the event partition of `day` unless it exists (moving that day's rows out of
    /// the default partition); whether it was created.
    fn create_partition(&mut self, day: i64) -> Result<bool, StoreError> {
        let stmt = self.statement("SELECT palisade_events_partition($1)")?;
        let created: bool = self.client.query_one(&stmt, &[&day])?.try_get(0)?;
        self.partitions.insert(day);
        Ok(created)
    }

    /// Applies pending migrations in one transaction, under an advisory lock so concurrent
    /// openers of a fresh database serialise instead of racing on `CREATE TABLE`.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version BIGINT PRIMARY KEY,
                 applied BIGINT NOT NULL
             )",
        )?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
                &[],
            )?
            .get(0);
        common::check_version(current, SCHEMA_VERSION)?;
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_version (version, applied) VALUES ($1, $2)",
                &[version, &SystemClock.now().0],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs a query built by [`common`] with driver-independent parameters.
    fn query_built(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| -> &(dyn ToSql + Sync) {
                match p {
                    Param::Int(i) => i,
                    Param::Text(s) => s,
                    Param::TextList(l) => l,
                }
            })
            .collect();
        Ok(self.client.query(&stmt, &refs)?)
    }
}

fn raw_event(r: &Row) -> Result<RawEvent, StoreError> {
    Ok(RawEvent {
        id: r.try_get(0)?,
        time: r.try_get(1)?,
        jail: r.try_get(2)?,
        filter: r.try_get(3)?,
        rule: r.try_get(4)?,
        ip: r.try_get(5)?,
        failure: r.try_get(6)?,
        user: r.try_get(7)?,
        fields: r.try_get(8)?,
        evidence: r.try_get(9)?,
    })
}

fn raw_decision(r: &Row) -> Result<RawDecision, StoreError> {
    Ok(RawDecision {
        id: r.try_get(0)?,
        target: r.try_get(1)?,
        jail: r.try_get(2)?,
        origin: r.try_get(3)?,
        reason: r.try_get(4)?,
        created: r.try_get(5)?,
        expires: r.try_get(6)?,
        simulated: r.try_get(7)?,
        level: r.try_get(8)?,
        status: r.try_get(9)?,
    })
}

/// Reads an `api_tokens` row (server queries).
fn pg_token(r: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        scope: r.try_get(2)?,
        token_hash: r.try_get(3)?,
        created: Timestamp(r.try_get(4)?),
    })
}

fn decode_decisions(rows: &[Row]) -> Result<Vec<RawDecision>, StoreError> {
    rows.iter().map(raw_decision).collect()
}

/// The event insert, one host for the batch (`$10`).
const INSERT_EVENTS: &str = "
    INSERT INTO events (time, jail, filter, rule, ip, failure, username, fields, evidence, host)
    SELECT u.time, $1, u.filter, u.rule, u.ip, u.failure, u.username, u.fields, u.evidence,
           $10::TEXT
    FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BOOLEAN[],
                $7::TEXT[], $8::TEXT[], $9::TEXT[])
         WITH ORDINALITY
         AS u(time, filter, rule, ip, failure, username, fields, evidence, ord)
    ORDER BY u.ord";

/// The event insert, one host per row (`$10`, batches of several agents).
const INSERT_EVENTS_HOSTS: &str = "
    INSERT INTO events (time, jail, filter, rule, ip, failure, username, fields, evidence, host)
    SELECT u.time, $1, u.filter, u.rule, u.ip, u.failure, u.username, u.fields, u.evidence,
           u.host
    FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BOOLEAN[],
                $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[])
         WITH ORDINALITY
         AS u(time, filter, rule, ip, failure, username, fields, evidence, host, ord)
    ORDER BY u.ord";

const UPSERT_HISTORY: &str = "
    INSERT INTO ip_history (ip, ip_key, first_seen, last_seen, failures, times_banned,
                            sample_hour, sample_count, events)
    SELECT u.ip, u.ip_key, u.first_seen, u.last_seen, u.failures, 0,
           u.sample_hour, u.sample_count, u.events
    FROM UNNEST($1::TEXT[], $2::BYTEA[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[],
                $6::BIGINT[], $7::BIGINT[], $8::BIGINT[])
         AS u(ip, ip_key, first_seen, last_seen, failures, sample_hour, sample_count, events)
    ON CONFLICT (ip) DO UPDATE SET
        first_seen = LEAST(ip_history.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(ip_history.last_seen, EXCLUDED.last_seen),
        failures = ip_history.failures + EXCLUDED.failures,
        events = ip_history.events + EXCLUDED.events,
        sample_hour = EXCLUDED.sample_hour,
        sample_count = EXCLUDED.sample_count";

/// Prepared statements of [`write_events`]: history sample lookup, event insert (one host,
/// a host per row), history upsert.
pub(crate) type EventStatements = (Statement, (Statement, Statement), Statement);

/// The fleet host of each event [`write_events`] writes.
#[derive(Clone, Copy)]
pub(crate) enum Hosts<'a> {
    /// The same for every event (`None` = local).
    All(Option<&'a str>),
    /// One per event, in the events' order (batches of several agents in one transaction).
    Each(&'a [&'a str]),
}

/// Writes a batch of one jail's events inside `tx`: event rows (evidence sampled), address
/// history. `hosts` are the fleet agents the events came from.
pub(crate) fn write_events(
    tx: &mut postgres::Transaction<'_>,
    stmts: &EventStatements,
    jail: &str,
    events: &[Event],
    hosts: Hosts<'_>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    if let Hosts::Each(v) = hosts {
        // An event without its host would be stored as this server's own.
        if v.len() != events.len() {
            return Err(StoreError::Corrupt(format!(
                "{} hosts for {} events",
                v.len(),
                events.len()
            )));
        }
    }
    let (select, insert, upsert) = (stmts.0.clone(), stmts.1.clone(), stmts.2.clone());
    let mut plan = BatchPlan::new(events);
    let jail = clean(jail);

    let texts: Vec<&str> = plan.ips.iter().map(|d| d.text.as_str()).collect();
    let index: HashMap<&str, usize> = texts.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut loaded = Vec::new();
    for row in tx.query(&select, &[&texts])? {
        let ip: &str = row.try_get(0)?;
        if let Some(&i) = index.get(ip) {
            let sample = Sample {
                hour: row.try_get(1)?,
                count: row.try_get(2)?,
            };
            loaded.push((i, sample));
        }
    }
    for (i, sample) in loaded {
        plan.ips[i].sample = sample;
    }
    plan.sample();

    for (c, rows) in plan.rows.chunks(CHUNK).enumerate() {
        let n = rows.len();
        let mut time = Vec::with_capacity(n);
        let mut filter = Vec::with_capacity(n);
        let mut rule = Vec::with_capacity(n);
        let mut ip = Vec::with_capacity(n);
        let mut failure = Vec::with_capacity(n);
        let mut user: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(n);
        let mut fields = Vec::with_capacity(n);
        let mut evidence: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(n);
        for row in rows {
            let e = row.event;
            time.push(e.time.0);
            filter.push(clean(&e.filter));
            rule.push(clean(&e.rule));
            ip.push(plan.ips[row.ip].text.as_str());
            failure.push(e.failure);
            user.push(e.user.as_deref().map(clean));
            fields.push(fields_to_json(&e.fields));
            evidence.push(row.keep_evidence.then(|| clean(&e.evidence)));
        }
        let filter: Vec<&str> = filter.iter().map(|c| c.as_ref()).collect();
        let rule: Vec<&str> = rule.iter().map(|c| c.as_ref()).collect();
        let user: Vec<Option<&str>> = user.iter().map(|c| c.as_deref()).collect();
        let evidence: Vec<Option<&str>> = evidence.iter().map(|c| c.as_deref()).collect();
        let one;
        let each: Vec<Option<&str>>;
        let (insert, host): (&Statement, &(dyn postgres::types::ToSql + Sync)) = match hosts {
            Hosts::All(h) => {
                one = h;
                (&insert.0, &one)
            }
            Hosts::Each(v) => {
                each = v[c * CHUNK..c * CHUNK + n]
                    .iter()
                    .map(|h| Some(*h))
                    .collect();
                (&insert.1, &each)
            }
        };
        tx.execute(
            insert,
            &[
                &jail.as_ref(),
                &time,
                &filter,
                &rule,
                &ip,
                &failure,
                &user,
                &fields,
                &evidence,
                host,
            ],
        )?;
    }

    // Upsert in key order so concurrent writers lock history rows in the same order.
    let mut order: Vec<usize> = (0..plan.ips.len()).collect();
    order.sort_by(|&a, &b| plan.ips[a].key.cmp(&plan.ips[b].key));
    let pick = |f: &dyn Fn(&common::HistoryDelta) -> i64| -> Vec<i64> {
        order.iter().map(|&i| f(&plan.ips[i])).collect()
    };
    let ips: Vec<&str> = order.iter().map(|&i| plan.ips[i].text.as_str()).collect();
    let keys: Vec<&[u8]> = order.iter().map(|&i| plan.ips[i].key.as_slice()).collect();
    let first = pick(&|d| d.first);
    let last = pick(&|d| d.last);
    let failures = pick(&|d| d.failures);
    let hours: Vec<Option<i64>> = order.iter().map(|&i| plan.ips[i].sample.hour).collect();
    let counts = pick(&|d| d.sample.count);
    let totals = pick(&|d| d.events);
    tx.execute(
        &upsert,
        &[
            &ips, &keys, &first, &last, &failures, &hours, &counts, &totals,
        ],
    )?;
    Ok(())
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        let today = now.0.div_euclid(crate::DAY_MICROS);
        for day in today..=today + crate::PARTITIONS_AHEAD {
            out.partitions_created += u64::from(self.create_partition(day)?);
        }
        let Some(cutoff) = out.cutoff else {
            return Ok(out);
        };
        // Day partitions wholly before the cutoff (the cutoff is a day start), oldest first.
        let list = self.statement(
            "SELECT c.relname::TEXT,
                    (to_date(substr(c.relname, 9), 'YYYYMMDD') - DATE '1970-01-01')::BIGINT
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'
             ORDER BY 2",
        )?;
        let old: Vec<(String, i64)> = self
            .client
            .query(&list, &[])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?
            .into_iter()
            .filter(|(_, day): &(String, i64)| {
                (day + 1).saturating_mul(crate::DAY_MICROS) <= cutoff.0
            })
            .collect();
        for (name, day) in old {
            // One short transaction per partition; the name comes from the catalogue and
            // matched `events_p` + 8 digits above.
            let mut tx = self.client.transaction()?;
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'; DROP TABLE IF EXISTS \"{name}\""
            ))?;
            tx.commit()?;
            self.partitions.remove(&day);
            out.partitions_dropped += 1;
        }
        // Old rows that landed in the default partition, in bounded batches.
        let delete = self.statement(
            "DELETE FROM events_default WHERE ctid IN
                 (SELECT ctid FROM events_default WHERE time < $1 LIMIT $2)",
        )?;
        for batch in 1.. {
            let n = self
                .client
                .execute(&delete, &[&cutoff.0, &(crate::RETENTION_BATCH as i64)])?;
            out.rows_deleted += n;
            if n < crate::RETENTION_BATCH as u64 {
                break;
            }
            if batch == crate::RETENTION_MAX_BATCHES {
                out.more = true;
                return Ok(out);
            }
            std::thread::sleep(crate::RETENTION_PAUSE);
        }
        // The per-address timeline's hours before the cutoff.
        let timeline = self.statement(
            "DELETE FROM ip_event_hourly WHERE ctid IN
                 (SELECT ctid FROM ip_event_hourly WHERE hour < $1 LIMIT $2)",
        )?;
        let hour = cutoff.0.div_euclid(common::HOUR_MICROS);
        for batch in 1.. {
            let n = self
                .client
                .execute(&timeline, &[&hour, &(crate::RETENTION_BATCH as i64)])?;
            out.timeline_rows_deleted += n;
            if n < crate::RETENTION_BATCH as u64 {
                break;
            }
            if batch == crate::RETENTION_MAX_BATCHES {
                out.more = true;
                return Ok(out);
            }
            std::thread::sleep(crate::RETENTION_PAUSE);
        }
        Ok(out)
    }

    fn schema_version(&mut self) -> Result<i64, StoreError> {
        let stmt =
            self.statement("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version")?;
        Ok(self.client.query_one(&stmt, &[])?.try_get(0)?)
    }

    fn record_events(&mut self, jail: &str, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.ensure_partitions(events.iter().map(|e| e.time.0));
        let stmts = self.event_statements()?;
        let mut tx = self.client.transaction()?;
        write_events(&mut tx, &stmts, jail, events, Hosts::All(None))?;
        tx.commit()?;
        Ok(())
    }

    fn record_batch(
        &mut self,
        events: &[(&str, &[Event])],
        positions: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        self.ensure_partitions(
            events
                .iter()
                .flat_map(|(_, evs)| evs.iter().map(|e| e.time.0)),
        );
        let stmts = self.event_statements()?;
        let put = self.statement(
            "INSERT INTO source_positions (source, position, updated) VALUES ($1, $2, $3)
             ON CONFLICT (source) DO UPDATE SET position = excluded.position,
                                                updated = excluded.updated",
        )?;
        let now = SystemClock.now().0;
        let mut tx = self.client.transaction()?;
        for (jail, evs) in events {
            write_events(&mut tx, &stmts, jail, evs, Hosts::All(None))?;
        }
        for (source, pos) in positions {
            tx.execute(&put, &[source, pos, &now])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn fleet_views(&mut self) -> &mut dyn crate::fleet::views::FleetViews {
        self
    }

    fn source_positions(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let q = self.statement("SELECT source, position FROM source_positions ORDER BY source")?;
        self.client
            .query(&q, &[])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn events(&mut self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let (sql, params) = events_sql(Dialect::Postgres, q);
        self.query_built(&sql, &params)?
            .iter()
            .map(|r| raw_event(r)?.decode())
            .collect()
    }

    fn insert_decision(&mut self, d: &Decision) -> Result<i64, StoreError> {
        let target = canonical_net(&d.target);
        let insert = self.statement(
            "INSERT INTO decisions (target, jail, origin, reason, created, expires,
                                    simulated, level, status, updated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $5)
             RETURNING id",
        )?;
        let single = self.statement(
            "INSERT INTO ip_history
                 (ip, ip_key, first_seen, last_seen, failures, times_banned, sample_count)
             VALUES ($1, $2, $3, $3, 0, 1, 0)
             ON CONFLICT (ip) DO UPDATE SET times_banned = ip_history.times_banned + 1",
        )?;
        let range = self.statement(
            "UPDATE ip_history SET times_banned = times_banned + 1
             WHERE ip_key BETWEEN $1 AND $2",
        )?;
        let mut tx = self.client.transaction()?;
        let id: i64 = tx
            .query_one(
                &insert,
                &[
                    &target.to_string(),
                    &clean(&d.jail).as_ref(),
                    &d.origin.as_str(),
                    &clean(&d.reason).as_ref(),
                    &d.created.0,
                    &d.expires.map(|t| t.0),
                    &d.simulated,
                    &i64::from(d.level),
                ],
            )?
            .try_get(0)?;
        match single_address(&target) {
            Some(ip) => {
                tx.execute(
                    &single,
                    &[&ip.to_string(), &common::ip_key(ip), &d.created.0],
                )?;
            }
            None => {
                let (lo, hi) = net_key_range(&target);
                tx.execute(&range, &[&lo, &hi])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    fn decisions(&mut self, q: &DecisionQuery) -> Result<Vec<StoredDecision>, StoreError> {
        let (sql, params) = decisions_sql(Dialect::Postgres, q);
        self.query_built(&sql, &params)?
            .iter()
            .map(|r| raw_decision(r)?.decode())
            .collect()
    }

    fn revoke_decision(&mut self, id: i64) -> Result<Option<Decision>, StoreError> {
        let stmt = self.statement(&format!(
            "UPDATE decisions SET status = 'revoked', updated = $2
             WHERE id = $1 AND status = 'active'
             RETURNING {DECISION_COLS}"
        ))?;
        let rows = self.client.query(&stmt, &[&id, &SystemClock.now().0])?;
        match rows.first() {
            Some(r) => Ok(Some(raw_decision(r)?.decode()?.decision)),
            None => Ok(None),
        }
    }

    fn expire_decisions(&mut self, now: Timestamp) -> Result<Vec<Decision>, StoreError> {
        let stmt = self.statement(&format!(
            "UPDATE decisions SET status = 'expired', updated = $1
             WHERE status = 'active' AND expires <= $1
             RETURNING {DECISION_COLS}"
        ))?;
        let rows = self.client.query(&stmt, &[&now.0])?;
        common::decode_changed(decode_decisions(&rows)?)
    }

    fn expire_decisions_quietly(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let stmt = self.statement(
            "UPDATE decisions SET status = 'expired', updated = $1
             WHERE status = 'active' AND expires <= $1",
        )?;
        Ok(self.client.execute(&stmt, &[&now.0])?)
    }

    fn ban_count(&mut self, target: &IpNet, since: Timestamp) -> Result<u32, StoreError> {
        let stmt =
            self.statement("SELECT COUNT(*) FROM decisions WHERE target = $1 AND created >= $2")?;
        let n: i64 = self
            .client
            .query_one(&stmt, &[&canonical_net(target).to_string(), &since.0])?
            .try_get(0)?;
        Ok(count_u32(n))
    }

    fn active_ban_counts(
        &mut self,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<Vec<(IpNet, u32)>, StoreError> {
        let stmt = self.statement(
            "SELECT target, COUNT(*) FROM decisions
             WHERE created >= $2 AND target IN (SELECT target FROM decisions
                 WHERE status = 'active' AND (expires IS NULL OR expires > $1))
             GROUP BY target",
        )?;
        self.client
            .query(&stmt, &[&now.0, &since.0])?
            .iter()
            .map(|r| {
                let target: String = r.try_get(0)?;
                let n: i64 = r.try_get(1)?;
                let net = target
                    .parse::<IpNet>()
                    .map_err(|_| StoreError::Corrupt(format!("decisions.target {target:?}")))?;
                Ok((net, count_u32(n)))
            })
            .collect()
    }

    fn ip_history(&mut self, ip: IpAddr) -> Result<Option<IpHistory>, StoreError> {
        let ip = canonical_ip(ip);
        let stmt = self.statement(
            "SELECT first_seen, last_seen, failures, times_banned, events
             FROM ip_history WHERE ip = $1",
        )?;
        let rows = self.client.query(&stmt, &[&ip.to_string()])?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let (first, last, failures, banned, events): (i64, i64, i64, i64, i64) = (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
        );
        Ok(Some(IpHistory {
            ip,
            first_seen: Timestamp(first),
            last_seen: Timestamp(last),
            failures: failures.max(0) as u64,
            times_banned: banned.max(0) as u64,
            events: events.max(0) as u64,
        }))
    }

    // --- server queries ---
    fn event_hours(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<HourCount>, StoreError> {
        let stmt = self.statement(
            "SELECT hour, jail, events, failures FROM event_hourly
             WHERE hour >= $1 AND hour < $2 ORDER BY hour, jail",
        )?;
        let rows = self.client.query(
            &stmt,
            &[&common::hour_ceil(since), &common::hour_ceil(until)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(common::hour_count(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                ))
            })
            .collect()
    }

    fn ban_hours(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<HourCount>, StoreError> {
        let stmt = self.statement(
            "SELECT created / 3600000000 AS h, COUNT(*) FROM decisions
             WHERE created >= $1 AND created < $2 GROUP BY h ORDER BY h",
        )?;
        let rows = self.client.query(&stmt, &[&since.0, &until.0])?;
        rows.iter()
            .map(|r| {
                Ok(common::hour_count(
                    r.try_get(0)?,
                    String::new(),
                    r.try_get(1)?,
                    0,
                ))
            })
            .collect()
    }

    fn top_offenders(
        &mut self,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<IpHistory>, StoreError> {
        let stmt = self.statement(
            "SELECT ip, first_seen, last_seen, failures, times_banned, events FROM ip_history
             WHERE last_seen >= $1 ORDER BY failures DESC LIMIT $2",
        )?;
        let rows = self.client.query(&stmt, &[&since.0, &i64::from(limit)])?;
        rows.iter()
            .map(|r| {
                common::history_row(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                )
            })
            .collect()
    }

    fn decision_count(&mut self, q: &DecisionQuery) -> Result<u64, StoreError> {
        let (sql, params) = decision_count_sql(Dialect::Postgres, q);
        let rows = self.query_built(&sql, &params)?;
        let n: i64 = rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn active_decision_count(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let stmt = self.statement(
            "SELECT COUNT(*) FROM decisions
             WHERE status = 'active' AND (expires IS NULL OR expires > $1)",
        )?;
        let n: i64 = self.client.query_one(&stmt, &[&now.0])?.try_get(0)?;
        Ok(n.max(0) as u64)
    }

    fn decision(&mut self, id: i64) -> Result<Option<StoredDecision>, StoreError> {
        let stmt = self.statement(&format!(
            "SELECT {DECISION_COLS} FROM decisions WHERE id = $1"
        ))?;
        let rows = self.client.query(&stmt, &[&id])?;
        rows.first().map(|r| raw_decision(r)?.decode()).transpose()
    }

    fn ip_activity(&mut self, ip: IpAddr, since: Timestamp) -> Result<IpActivity, StoreError> {
        let ip = common::ip_text(ip);
        let jails = self.statement(
            "SELECT jail, events FROM ip_jail_events WHERE ip = $1
             ORDER BY events DESC, jail",
        )?;
        let hours = self.statement(
            "SELECT hour, events FROM ip_event_hourly
             WHERE ip = $1 AND hour >= $2 ORDER BY hour",
        )?;
        let jails = self
            .client
            .query(&jails, &[&ip])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)?.max(0) as u64)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let hours = self
            .client
            .query(&hours, &[&ip, &since.0.div_euclid(common::HOUR_MICROS)])?
            .iter()
            .map(|r| {
                Ok((
                    common::hour_start(r.try_get(0)?),
                    r.try_get::<_, i64>(1)?.max(0) as u64,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(IpActivity { jails, hours })
    }

    fn allowlist(&mut self) -> Result<Vec<AllowEntry>, StoreError> {
        let stmt = self.statement("SELECT id, net, comment, created FROM allowlist ORDER BY id")?;
        let rows = self.client.query(&stmt, &[])?;
        rows.iter()
            .map(|r| {
                common::allow_entry(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)
            })
            .collect()
    }

    fn allowlist_add(
        &mut self,
        net: &IpNet,
        comment: &str,
        now: Timestamp,
    ) -> Result<AllowEntry, StoreError> {
        let net = canonical_net(net);
        let stmt = self.statement(
            "INSERT INTO allowlist (net, comment, created) VALUES ($1, $2, $3)
             ON CONFLICT (net) DO UPDATE SET comment = EXCLUDED.comment
             RETURNING id, created",
        )?;
        let comment = clean(comment).into_owned();
        let r = self
            .client
            .query_one(&stmt, &[&net.to_string(), &comment, &now.0])?;
        Ok(AllowEntry {
            id: r.try_get(0)?,
            net,
            comment,
            created: Timestamp(r.try_get(1)?),
        })
    }

    fn allowlist_remove(&mut self, id: i64) -> Result<bool, StoreError> {
        let stmt = self.statement("DELETE FROM allowlist WHERE id = $1")?;
        Ok(self.client.execute(&stmt, &[&id])? > 0)
    }

    fn user_count(&mut self) -> Result<u64, StoreError> {
        let stmt = self.statement("SELECT COUNT(*) FROM users")?;
        let n: i64 = self.client.query_one(&stmt, &[])?.try_get(0)?;
        Ok(n.max(0) as u64)
    }

    fn user(&mut self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let stmt = self.statement(
            "SELECT id, name, password_hash, created, last_login FROM users WHERE name = $1",
        )?;
        let rows = self.client.query(&stmt, &[&name])?;
        rows.first()
            .map(|r| {
                Ok(UserRecord {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    password_hash: r.try_get(2)?,
                    created: Timestamp(r.try_get(3)?),
                    last_login: r.try_get::<_, Option<i64>>(4)?.map(Timestamp),
                })
            })
            .transpose()
    }

    fn user_set(
        &mut self,
        name: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let stmt = self.statement(
            "INSERT INTO users (name, password_hash, created) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash",
        )?;
        self.client
            .execute(&stmt, &[&clean(name).as_ref(), &password_hash, &now.0])?;
        Ok(())
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let stmt = self.statement(
            "SELECT id, name, password_hash, created, last_login FROM users ORDER BY name",
        )?;
        self.client
            .query(&stmt, &[])?
            .iter()
            .map(|r| {
                Ok(UserRecord {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    password_hash: r.try_get(2)?,
                    created: Timestamp(r.try_get(3)?),
                    last_login: r.try_get::<_, Option<i64>>(4)?.map(Timestamp),
                })
            })
            .collect()
    }

    fn user_remove(&mut self, name: &str) -> Result<bool, StoreError> {
        let stmt = self.statement("DELETE FROM users WHERE name = $1")?;
        Ok(self.client.execute(&stmt, &[&name])? > 0)
    }

    fn user_logged_in(&mut self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        let stmt = self.statement("UPDATE users SET last_login = $2 WHERE name = $1")?;
        self.client.execute(&stmt, &[&name, &now.0])?;
        Ok(())
    }

    fn token_add(
        &mut self,
        name: &str,
        scope: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let stmt = self.statement(
            "INSERT INTO api_tokens (name, scope, token_hash, created)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )?;
        Ok(self
            .client
            .query_one(&stmt, &[&clean(name).as_ref(), &scope, &token_hash, &now.0])?
            .try_get(0)?)
    }

    fn token_by_hash(&mut self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let stmt = self.statement(
            "SELECT id, name, scope, token_hash, created FROM api_tokens WHERE token_hash = $1",
        )?;
        let rows = self.client.query(&stmt, &[&token_hash])?;
        rows.first().map(pg_token).transpose()
    }

    fn tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError> {
        let stmt = self
            .statement("SELECT id, name, scope, token_hash, created FROM api_tokens ORDER BY id")?;
        let rows = self.client.query(&stmt, &[])?;
        rows.iter().map(pg_token).collect()
    }

    fn token_remove(&mut self, id: i64) -> Result<bool, StoreError> {
        let stmt = self.statement("DELETE FROM api_tokens WHERE id = $1")?;
        Ok(self.client.execute(&stmt, &[&id])? > 0)
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
        let stmt = self.statement(
            "SELECT COUNT(*)::BIGINT, COALESCE(SUM(CASE WHEN failure THEN 1 ELSE 0 END), 0)::BIGINT
             FROM events WHERE time >= $1 AND time < $2",
        )?;
        let r = self.client.query_one(&stmt, &[&a, &b])?;
        out.events = r.try_get::<_, i64>(0)?.max(0) as u64;
        out.failures = r.try_get::<_, i64>(1)?.max(0) as u64;
        let stmt = self.statement(
            "SELECT jail, COUNT(*)::BIGINT AS n FROM events WHERE time >= $1 AND time < $2
             GROUP BY jail ORDER BY n DESC, jail",
        )?;
        for r in self.client.query(&stmt, &[&a, &b])? {
            out.events_per_jail
                .push((r.try_get(0)?, r.try_get::<_, i64>(1)?.max(0) as u64));
        }
        let stmt = self.statement(
            "SELECT ip, COUNT(*)::BIGINT AS n FROM events WHERE time >= $1 AND time < $2
             GROUP BY ip ORDER BY n DESC, ip LIMIT $3",
        )?;
        for r in self.client.query(&stmt, &[&a, &b, &n])? {
            let ip: String = r.try_get(0)?;
            let ip = ip
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("events.ip {ip:?}")))?;
            out.top_ips
                .push((ip, r.try_get::<_, i64>(1)?.max(0) as u64));
        }
        let stmt = self.statement(
            "SELECT COUNT(*)::BIGINT FROM decisions WHERE created >= $1 AND created < $2",
        )?;
        out.decisions_total = self
            .client
            .query_one(&stmt, &[&a, &b])?
            .try_get::<_, i64>(0)?
            .max(0) as u64;
        let stmt = self.statement(&format!(
            "SELECT {DECISION_COLS} FROM decisions WHERE created >= $1 AND created < $2
             ORDER BY created DESC, id DESC LIMIT $3"
        ))?;
        for r in self.client.query(&stmt, &[&a, &b, &n])? {
            out.decisions.push(raw_decision(&r)?.decode()?);
        }
        let stmt = self.statement(
            "SELECT target,
                    SUM(CASE WHEN created >= $1 THEN 1 ELSE 0 END)::BIGINT AS inside,
                    COUNT(*)::BIGINT AS total
             FROM decisions
             WHERE created < $2 AND target IN
                   (SELECT target FROM decisions WHERE created >= $1 AND created < $2)
             GROUP BY target HAVING COUNT(*) > 1
             ORDER BY total DESC, target LIMIT $3",
        )?;
        for r in self.client.query(&stmt, &[&a, &b, &n])? {
            let t: String = r.try_get(0)?;
            let net = t
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("decisions.target {t:?}")))?;
            out.repeat_offenders.push((
                net,
                r.try_get::<_, i64>(1)?.max(0) as u64,
                r.try_get::<_, i64>(2)?.max(0) as u64,
            ));
        }
        Ok(out)
    }
    // --- end report queries ---
}
