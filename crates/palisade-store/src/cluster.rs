//! Several fleet servers on one PostgreSQL database (issue 18): the pieces of the store they
//! coordinate through. Nothing here exists on SQLite (one process per file): the functions
//! there answer [`StoreError::NotCompiled`] or are never called ([`crate::fleet::FleetStore::is_shared`]).
//!
//! - **Ban log wake-up.** Every append to `fleet_decisions` first takes the transaction-level
//!   advisory lock [`LOG_APPEND_LOCK`] and queues `NOTIFY palisade_fleet_log` (empty payload),
//!   both in the append's own transaction ([`before_log_append`]). The lock serialises
//!   appenders from the sequence draw to the commit, so **sequence order is commit order**: a
//!   reader that saw sequence `n` has seen every committed entry below `n`, and tailing "seq >
//!   cursor" (the servers' pollers, the agents' cursors, their checksums) never skips a
//!   late-committing lower number. Appends are rare (bans, not events), so the lock costs
//!   nothing measurable. The notification is only a hint: a [`Listener`] on its own
//!   connection wakes the server's poller at once; polling by sequence stays the truth.
//! - **Correlator election.** [`Candidate`]: one connection per server trying
//!   `pg_try_advisory_lock(CORRELATOR_LOCK)`; the holder keeps the connection open (the
//!   session lock lives as long as it) and checks it every second; when its process dies the
//!   connection drops and PostgreSQL releases the lock.
//! - **Event tail.** [`EventTail`] reads every agent's events by id, whichever server stored
//!   them. Event ids come from one sequence drawn by concurrent ingest transactions, so a
//!   lower id can commit after a higher one was read: the tail remembers the holes below its
//!   head ([`Gaps`]) and re-reads them until they fill or [`GAP_TIMEOUT`] passes (a rolled
//!   back batch, a killed server's open transaction, the sequence's cache after a crash).
//!   Each row is handed out once.

use crate::StoreError;
use palisade_core::Event;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// `pg_advisory_xact_lock` key held by a ban log append until its commit ("PALI" + 1).
pub const LOG_APPEND_LOCK: i64 = 0x5041_4c49_0001;
/// `pg_try_advisory_lock` key of the fleet correlator ("PALI" + 2).
pub const CORRELATOR_LOCK: i64 = 0x5041_4c49_0002;
/// The channel appends notify.
pub const LOG_CHANNEL: &str = "palisade_fleet_log";
/// How long a hole below the tail's head is re-read before it is given up.
pub const GAP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most holes remembered (oldest given up first beyond).
pub const MAX_GAPS: usize = 4096;

/// Whether `url` names a store several servers can share (PostgreSQL).
pub fn is_shared_url(url: &str) -> bool {
    matches!(
        crate::StoreUrl::parse(url),
        Ok(crate::StoreUrl::Postgres(_))
    )
}

/// In a ban log append's transaction, before the INSERT: serialise appenders and notify.
#[cfg(feature = "postgres")]
pub(crate) fn before_log_append<C: ::postgres::GenericClient>(c: &mut C) -> Result<(), StoreError> {
    c.execute(
        "SELECT pg_advisory_xact_lock($1), pg_notify($2, '')",
        &[&LOG_APPEND_LOCK, &LOG_CHANNEL],
    )?;
    Ok(())
}

#[cfg(feature = "postgres")]
fn client(url: &str) -> Result<::postgres::Client, StoreError> {
    let crate::StoreUrl::Postgres(params) = crate::StoreUrl::parse(url)? else {
        return Err(StoreError::BadUrl(crate::redact_url(url)));
    };
    let mut config: ::postgres::Config = params
        .parse()
        .map_err(|_| StoreError::BadUrl(crate::redact_url(&params)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("palisade-fleet-cluster");
    // A silently dead peer (network partition) is noticed within about 20 s.
    config.keepalives_idle(Duration::from_secs(10));
    config
        .connect(::postgres::NoTls)
        .map_err(|e| crate::postgres::scrub(e.into(), config.get_password()))
}

#[cfg(not(feature = "postgres"))]
struct NoClient;

/// A connection LISTENing on [`LOG_CHANNEL`].
pub struct Listener {
    #[cfg(feature = "postgres")]
    client: ::postgres::Client,
    #[cfg(not(feature = "postgres"))]
    _client: NoClient,
}

impl Listener {
    /// Connects and listens.
    pub fn connect(url: &str) -> Result<Listener, StoreError> {
        #[cfg(feature = "postgres")]
        {
            let mut client = client(url)?;
            client.batch_execute(&format!("LISTEN {LOG_CHANNEL}"))?;
            Ok(Listener { client })
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            Err(StoreError::NotCompiled("postgres"))
        }
    }

    /// Waits up to `timeout` for a notification; whether one (or more: all pending are
    /// consumed) came. An error means the connection is gone.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        #[cfg(feature = "postgres")]
        {
            use ::postgres::fallible_iterator::FallibleIterator;
            let got = {
                let mut n = self.client.notifications();
                let got = n.timeout_iter(timeout).next()?.is_some();
                if got {
                    while n.iter().next()?.is_some() {}
                }
                got
            };
            if !got && self.client.is_closed() {
                return Err(StoreError::Backend {
                    backend: "postgres",
                    message: "the listening connection closed".into(),
                });
            }
            Ok(got)
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = timeout;
            Err(StoreError::NotCompiled("postgres"))
        }
    }
}

/// A server's bid for the correlator lock, on its own connection.
pub struct Candidate {
    #[cfg(feature = "postgres")]
    client: ::postgres::Client,
    #[cfg(not(feature = "postgres"))]
    _client: NoClient,
    held: bool,
}

impl Candidate {
    /// Connects (does not try the lock yet).
    pub fn connect(url: &str) -> Result<Candidate, StoreError> {
        #[cfg(feature = "postgres")]
        {
            Ok(Candidate {
                client: client(url)?,
                held: false,
            })
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            Err(StoreError::NotCompiled("postgres"))
        }
    }

    /// Tries to take the lock (no wait); whether this connection holds it now.
    pub fn try_lead(&mut self) -> Result<bool, StoreError> {
        if self.held {
            return Ok(true);
        }
        #[cfg(feature = "postgres")]
        {
            self.held = self
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&CORRELATOR_LOCK])?
                .get(0);
        }
        Ok(self.held)
    }

    /// Whether the lock is still held: the connection answers and PostgreSQL lists the lock
    /// as this session's.
    pub fn still_leads(&mut self) -> bool {
        if !self.held {
            return false;
        }
        #[cfg(feature = "postgres")]
        {
            let r = self.client.query_one(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND pid = pg_backend_pid()
                   AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1",
                &[&CORRELATOR_LOCK],
            );
            self.held = matches!(r.map(|r| r.get::<_, i64>(0)), Ok(n) if n > 0);
        }
        self.held
    }
}

/// One agent's event read by the tail.
#[derive(Clone, Debug)]
pub struct TailEvent {
    /// Store id.
    pub id: i64,
    /// The agent (its name).
    pub host: String,
    /// Its jail.
    pub jail: String,
    /// The event, with the agent's own time (not corrected for its clock offset).
    pub event: Event,
}

/// What an [`EventTail`] did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Agents' events handed out.
    pub events: u64,
    /// Of them, read from a hole (committed after a higher id was read).
    pub late: u64,
    /// Ids of holes given up (never committed within [`GAP_TIMEOUT`], or beyond
    /// [`MAX_GAPS`]).
    pub given_up: u64,
}

/// The holes below a tail's head: id ranges not seen yet, with when they were found.
#[derive(Debug, Default)]
pub struct Gaps {
    ranges: VecDeque<(i64, i64, Instant)>,
}

impl Gaps {
    /// After reading `ids` (ascending, all above `head`): the holes between are remembered.
    /// Returns the ids dropped to stay within [`MAX_GAPS`].
    pub fn note_read(&mut self, head: i64, ids: &[i64], now: Instant) -> u64 {
        let mut prev = head;
        for &id in ids {
            if id > prev + 1 {
                self.ranges.push_back((prev + 1, id - 1, now));
            }
            prev = prev.max(id);
        }
        let mut dropped = 0;
        while self.ranges.len() > MAX_GAPS {
            if let Some((lo, hi, _)) = self.ranges.pop_front() {
                dropped += (hi - lo + 1) as u64;
            }
        }
        dropped
    }

    /// `id` came: it is no longer a hole. Whether it was one.
    pub fn fill(&mut self, id: i64) -> bool {
        let Some(i) = self.ranges.iter().position(|r| r.0 <= id && id <= r.1) else {
            return false;
        };
        let (lo, hi, t) = self.ranges[i];
        match (lo == id, hi == id) {
            (true, true) => {
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i].0 = id + 1,
            (false, true) => self.ranges[i].1 = id - 1,
            (false, false) => {
                self.ranges[i].1 = id - 1;
                self.ranges.insert(i + 1, (id + 1, hi, t));
            }
        }
        true
    }

    /// Gives up the holes found before `now - timeout`; returns how many ids.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> u64 {
        let mut n = 0;
        self.ranges.retain(|&(lo, hi, t)| {
            let keep = now.saturating_duration_since(t) < timeout;
            if !keep {
                n += (hi - lo + 1) as u64;
            }
            keep
        });
        n
    }

    /// The holes as (low, high) bounds, inclusive.
    pub fn bounds(&self) -> (Vec<i64>, Vec<i64>) {
        self.ranges.iter().map(|r| (r.0, r.1)).unzip()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Reads agents' events (`host` not NULL) by id, in order, each once, holes re-read.
pub struct EventTail {
    #[cfg(feature = "postgres")]
    client: ::postgres::Client,
    #[cfg(not(feature = "postgres"))]
    _client: NoClient,
    head: i64,
    gaps: Gaps,
    stats: TailStats,
}

#[cfg(feature = "postgres")]
const TAIL_COLS: &str = "id, time, jail, filter, rule, ip, failure, username, host";

#[cfg(feature = "postgres")]
fn tail_row(r: &::postgres::Row) -> Result<Option<TailEvent>, StoreError> {
    let Some(host) = r.try_get::<_, Option<String>>(8)? else {
        return Ok(None);
    };
    let e = crate::common::RawEvent {
        id: r.try_get(0)?,
        time: r.try_get(1)?,
        jail: r.try_get(2)?,
        filter: r.try_get(3)?,
        rule: r.try_get(4)?,
        ip: r.try_get(5)?,
        failure: r.try_get(6)?,
        user: r.try_get(7)?,
        fields: "{}".into(),
        evidence: None,
    }
    .decode()?;
    Ok(Some(TailEvent {
        id: e.id,
        host,
        jail: e.jail,
        event: e.event,
    }))
}

impl EventTail {
    /// Connects; the tail starts after the newest event stored before `since` (agent time,
    /// microseconds): the first read hands out every event from `since` on — the warm-up of
    /// a correlator taking over.
    pub fn connect(url: &str, since: palisade_core::Timestamp) -> Result<EventTail, StoreError> {
        #[cfg(feature = "postgres")]
        {
            let mut client = client(url)?;
            let first: Option<i64> = client
                .query_one("SELECT MIN(id) FROM events WHERE time >= $1", &[&since.0])?
                .get(0);
            let head = match first {
                Some(f) => f - 1,
                None => client
                    .query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])?
                    .get(0),
            };
            Ok(EventTail {
                client,
                head,
                gaps: Gaps::default(),
                stats: TailStats::default(),
            })
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (url, since);
            Err(StoreError::NotCompiled("postgres"))
        }
    }

    /// The newest id read.
    pub fn head(&self) -> i64 {
        self.head
    }

    /// Counters.
    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// The next events: those that filled holes, then at most `limit` rows above the head
    /// (the caller reads again at once when it got `limit` or more).
    pub fn poll(&mut self, limit: u32) -> Result<Vec<TailEvent>, StoreError> {
        let now = Instant::now();
        let mut out = Vec::new();
        #[cfg(feature = "postgres")]
        {
            if !self.gaps.is_empty() {
                let (lo, hi) = self.gaps.bounds();
                let rows = self.client.query(
                    &format!(
                        "SELECT {TAIL_COLS} FROM events e
                         JOIN unnest($1::bigint[], $2::bigint[]) AS g(lo, hi)
                           ON e.id BETWEEN g.lo AND g.hi
                         ORDER BY e.id"
                    ),
                    &[&lo, &hi],
                )?;
                for r in &rows {
                    let id: i64 = r.try_get(0)?;
                    if self.gaps.fill(id) {
                        if let Some(e) = tail_row(r)? {
                            self.stats.late += 1;
                            out.push(e);
                        }
                    }
                }
            }
            let rows = self.client.query(
                &format!("SELECT {TAIL_COLS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"),
                &[&self.head, &i64::from(limit)],
            )?;
            let mut ids = Vec::with_capacity(rows.len());
            for r in &rows {
                ids.push(r.try_get::<_, i64>(0)?);
                if let Some(e) = tail_row(r)? {
                    out.push(e);
                }
            }
            self.stats.given_up += self.gaps.note_read(self.head, &ids, now);
            if let Some(&last) = ids.last() {
                self.head = last;
            }
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = limit;
            out.clear();
        }
        self.stats.given_up += self.gaps.expire(now, GAP_TIMEOUT);
        self.stats.events += out.len() as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_remembered_filled_and_given_up() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        assert_eq!(g.note_read(10, &[11, 14, 15, 20], t0), 0);
        assert_eq!(g.bounds(), (vec![12, 16], vec![13, 19]));
        assert!(g.fill(17));
        assert_eq!(g.bounds(), (vec![12, 16, 18], vec![13, 16, 19]));
        assert!(g.fill(12) && g.fill(13) && g.fill(16));
        assert!(!g.fill(17), "handed out once");
        assert!(!g.fill(21), "not a hole");
        assert_eq!(g.bounds(), (vec![18], vec![19]));
        assert_eq!(g.expire(t0 + GAP_TIMEOUT / 2, GAP_TIMEOUT), 0);
        assert_eq!(g.expire(t0 + GAP_TIMEOUT, GAP_TIMEOUT), 2);
        assert!(g.is_empty());
    }

    #[test]
    fn holes_are_bounded() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        let ids: Vec<i64> = (1..=(MAX_GAPS as i64 + 10)).map(|i| i * 2).collect();
        assert_eq!(g.note_read(0, &ids, t0), 10);
        assert_eq!(g.bounds().0.len(), MAX_GAPS);
        assert_eq!(g.bounds().0[0], 21, "the oldest holes went first");
    }
}
