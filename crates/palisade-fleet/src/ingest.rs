//! Where the server stores agents' batches (issue 16's ingest target).
//!
//! PostgreSQL: a small pool of its own connections ([`INGEST_CONNECTIONS`]) with group
//! commit. A batch that finds a connection free is stored at once; otherwise it queues, and
//! the session that next gets a connection stores its own batch together with the queued
//! ones (up to [`GROUP_EVENTS`] events, [`GROUP_BATCHES`] batches) in ONE transaction
//! ([`FleetStore::ingest_many`]). So the number of commits follows the load, not the number
//! of agents: a thousand agents sending a few events each share a handful of commits (each
//! one a synchronous WAL flush on a durable cluster) instead of queueing a thousand. A
//! group that fails (an agent's epoch changed, a lost connection) is stored again batch by
//! batch, so one bad batch fails alone. One agent's batches stay in order because its
//! session stores a batch and acknowledges it before reading the next one; its row is locked
//! in each ingest transaction. SQLite stays one writer: batches go through the server's one
//! store connection.
//!
//! Either way the time a batch waits for its store connection is measured: while batches are
//! waiting and the last one waited more than [`INGEST_BUSY_WAIT`], the server is "saturated"
//! and new connections are asked to come back later ([`crate::overload`]). A wait time, not a
//! count of waiting sessions: after a server's death a thousand reconnecting agents each
//! send a small batch at once, which is many waiters but no real overload (the first
//! benchmark of that scenario, with a count of 256, turned the agents away for nothing).

use palisade_store::fleet::{FleetStore, IngestJob, Ingested, ShippedEvent};
use palisade_store::StoreError;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Store connections for ingest on PostgreSQL (measured in bench/fleet/RESULTS.md).
pub const INGEST_CONNECTIONS: usize = 4;
/// A wait for a store connection beyond which ingest counts as saturated.
pub const INGEST_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// At most this many events in one group commit: one full batch
/// ([`palisade_proto::fleet::MAX_BATCH`]). Full batches gain nothing from sharing a commit
/// (measured: a bulk ingest with groups of up to 5,000 events stored about a third fewer
/// events a second for the same PostgreSQL CPU); many small batches, a trickle from many
/// agents, are grouped.
pub const GROUP_EVENTS: usize = palisade_proto::fleet::MAX_BATCH;
/// At most this many batches in one group commit.
pub const GROUP_BATCHES: usize = 256;

type SharedStore = Arc<Mutex<Box<dyn FleetStore>>>;
type Conn = Box<dyn FleetStore>;

/// A batch waiting in the pool's queue.
struct Job {
    id: String,
    epoch: u64,
    last_seq: u64,
    queued: Instant,
    state: Mutex<JobState>,
    changed: Condvar,
}

#[derive(Default)]
struct JobState {
    /// The batch, until a leader takes it (and with the result, once stored).
    batch: Option<Vec<ShippedEvent>>,
    /// A connection handed over: this job's session leads the next group.
    conn: Option<Conn>,
    result: Option<Result<Ingested, StoreError>>,
}

#[derive(Default)]
struct Pool {
    free: Vec<Conn>,
    queue: VecDeque<Arc<Job>>,
}

enum Kind {
    /// The server's one connection (SQLite).
    Shared(SharedStore),
    /// Own connections; a connection is free only while no batch queues.
    Pool(Mutex<Pool>, usize),
}

/// The ingest path.
pub struct Ingest {
    kind: Kind,
    waiting: AtomicUsize,
    /// How long the last batch waited for its connection (ms).
    last_wait_ms: AtomicU64,
    /// Transactions (groups) and batches stored so far (PostgreSQL pool).
    groups: AtomicU64,
    batches: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ingest {
    /// For the store `url`: a pool of `connections` on PostgreSQL (when more than one),
    /// else the shared connection.
    pub fn new(url: &str, shared: SharedStore, connections: usize) -> Result<Ingest, StoreError> {
        let pg = matches!(
            palisade_store::StoreUrl::parse(url)?,
            palisade_store::StoreUrl::Postgres(_)
        );
        let kind = if pg && connections > 1 {
            let mut free = Vec::with_capacity(connections);
            for _ in 0..connections {
                free.push(palisade_store::fleet::open(url)?);
            }
            Kind::Pool(
                Mutex::new(Pool {
                    free,
                    queue: VecDeque::new(),
                }),
                connections,
            )
        } else {
            Kind::Shared(shared)
        };
        Ok(Ingest {
            kind,
            waiting: AtomicUsize::new(0),
            last_wait_ms: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        })
    }

    /// Connections used for ingest.
    pub fn connections(&self) -> usize {
        match &self.kind {
            Kind::Shared(_) => 1,
            Kind::Pool(_, n) => *n,
        }
    }

    /// Group commits and the batches they stored so far (PostgreSQL; 0 and 0 on SQLite).
    pub fn commits(&self) -> (u64, u64) {
        (
            self.groups.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
        )
    }

    /// Sessions waiting for (or holding) an ingest connection now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether ingest is saturated (new connections should come back later).
    pub fn saturated(&self) -> bool {
        self.waiting() > 0
            && self.last_wait_ms.load(Ordering::Relaxed) > INGEST_BUSY_WAIT.as_millis() as u64
    }

    fn waited(&self, since: Instant) {
        self.last_wait_ms
            .store(since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Stores one batch ([`FleetStore::ingest`]), possibly in a group with other sessions'
    /// batches; gives the batch back with the result. Blocking: the session runs it with
    /// `spawn_blocking` and keeps pushing bans meanwhile.
    pub fn ingest(
        &self,
        id: &str,
        epoch: u64,
        last_seq: u64,
        batch: Vec<ShippedEvent>,
    ) -> (Result<Ingested, StoreError>, Vec<ShippedEvent>) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _w = Waiting(&self.waiting);
        let since = Instant::now();
        let pool = match &self.kind {
            Kind::Shared(s) => {
                let mut g = lock(s);
                self.waited(since);
                let r = g.ingest(id, epoch, last_seq, &batch);
                return (r, batch);
            }
            Kind::Pool(pool, _) => pool,
        };
        let job = Arc::new(Job {
            id: id.to_string(),
            epoch,
            last_seq,
            queued: since,
            state: Mutex::new(JobState {
                batch: Some(batch),
                ..Default::default()
            }),
            changed: Condvar::new(),
        });
        let conn = {
            let mut p = lock(pool);
            match p.free.pop() {
                Some(c) => c,
                None => {
                    p.queue.push_back(job.clone());
                    drop(p);
                    let mut st = lock(&job.state);
                    loop {
                        if let Some(r) = st.result.take() {
                            let batch = st.batch.take().unwrap_or_default();
                            return (r, batch);
                        }
                        if let Some(c) = st.conn.take() {
                            break c;
                        }
                        st = job.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        };
        self.lead(pool, conn, &job)
    }

    /// Stores `me`'s batch and the queued ones that fit with it through `conn`, hands each
    /// its result, then hands `conn` to the next queued batch (or frees it).
    fn lead(
        &self,
        pool: &Mutex<Pool>,
        mut conn: Conn,
        me: &Arc<Job>,
    ) -> (Result<Ingested, StoreError>, Vec<ShippedEvent>) {
        let mine = lock(&me.state).batch.take().unwrap_or_default();
        // `me` is the group's oldest batch: it was at the queue's front when handed `conn`,
        // or found `conn` free with nothing queued.
        self.waited(me.queued);
        let mut group: Vec<(Arc<Job>, Vec<ShippedEvent>)> = Vec::new();
        {
            let mut p = lock(pool);
            let mut events = mine.len();
            while group.len() + 1 < GROUP_BATCHES {
                let Some(next) = p.queue.front() else { break };
                let b = {
                    let mut st = lock(&next.state);
                    if events + st.batch.as_ref().map_or(0, Vec::len) > GROUP_EVENTS {
                        break;
                    }
                    st.batch.take().unwrap_or_default()
                };
                events += b.len();
                let next = p.queue.pop_front().expect("front exists");
                group.push((next, b));
            }
        }
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.batches
            .fetch_add(group.len() as u64 + 1, Ordering::Relaxed);
        let mut results = {
            let mut jobs = Vec::with_capacity(group.len() + 1);
            jobs.push(IngestJob {
                id: &me.id,
                epoch: me.epoch,
                last_seq: me.last_seq,
                events: &mine,
            });
            for (j, b) in &group {
                jobs.push(IngestJob {
                    id: &j.id,
                    epoch: j.epoch,
                    last_seq: j.last_seq,
                    events: b,
                });
            }
            store_group(conn.as_mut(), &jobs)
        }
        .into_iter();
        let own = results
            .next()
            .unwrap_or_else(|| Err(StoreError::Corrupt("ingest: no result".into())));
        for ((job, batch), r) in group.into_iter().zip(results) {
            let mut st = lock(&job.state);
            st.batch = Some(batch);
            st.result = Some(r);
            job.changed.notify_one();
        }
        // Hand the connection on: a connection is free only while nothing queues.
        let mut p = lock(pool);
        match p.queue.pop_front() {
            Some(next) => {
                lock(&next.state).conn = Some(conn);
                next.changed.notify_one();
            }
            None => p.free.push(conn),
        }
        drop(p);
        (own, mine)
    }
}

/// Stores a group in one transaction; when that fails, batch by batch, so a bad batch (an
/// agent whose epoch changed) fails alone. One result per job.
fn store_group(
    conn: &mut dyn FleetStore,
    jobs: &[IngestJob<'_>],
) -> Vec<Result<Ingested, StoreError>> {
    match conn.ingest_many(jobs) {
        Ok(v) if v.len() == jobs.len() => v.into_iter().map(Ok).collect(),
        Ok(_) | Err(_) if jobs.len() > 1 => jobs
            .iter()
            .map(|j| conn.ingest(j.id, j.epoch, j.last_seq, j.events))
            .collect(),
        Ok(_) => vec![Err(StoreError::Corrupt("ingest: no result".into()))],
        Err(e) => vec![Err(e)],
    }
}

struct Waiting<'a>(&'a AtomicUsize);
impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{Event, Timestamp};

    fn event(seq: u64, agent: usize) -> ShippedEvent {
        let ip = std::net::Ipv4Addr::new(198, 18, agent as u8, (seq % 250) as u8 + 1);
        (
            seq,
            "sshd".into(),
            Event {
                time: Timestamp::from_secs(1_700_000_000 + seq as i64),
                ip: ip.into(),
                filter: "sshd".into(),
                rule: "failed_password".into(),
                failure: true,
                user: None,
                fields: Vec::new(),
                evidence: "".into(),
            },
        )
    }

    /// Many sessions sending small batches through two PostgreSQL connections: batches are
    /// grouped into shared commits, each stored exactly once under its own agent, in order.
    #[test]
    fn small_batches_share_commits_and_are_stored_exactly_once() {
        let Ok(admin) = std::env::var("PALISADE_TEST_PG_URL") else {
            return palisade_testkit::require_or_skip("PG", "PALISADE_TEST_PG_URL is not set");
        };
        // The cluster's database may hold other tests' agents: names of our own.
        let url = admin;
        let tag = format!("ingest{}x", std::process::id());
        let shared: SharedStore = Arc::new(Mutex::new(palisade_store::fleet::open(&url).unwrap()));
        const AGENTS: usize = 24;
        const BATCHES: u64 = 15;
        {
            let mut s = lock(&shared);
            let now = Timestamp::from_secs(1_700_000_000);
            s.token_add(&tag, AGENTS as u32, None, now).unwrap();
            for a in 0..AGENTS {
                let (n, id) = (format!("{tag}h{a}"), format!("{tag}id{a}"));
                assert_eq!(s.enroll(&tag, &n, &id, "k", now, false).unwrap(), Ok(()));
                assert_eq!(s.high_water(&id, 1).unwrap(), 0);
            }
        }
        let ingest = Arc::new(Ingest::new(&url, shared.clone(), 2).unwrap());
        let threads: Vec<_> = (0..AGENTS)
            .map(|a| {
                let (ingest, id) = (ingest.clone(), format!("{tag}id{a}"));
                std::thread::spawn(move || {
                    for b in 0..BATCHES {
                        // Three events a batch; every other batch resends the previous one's
                        // last event (a resend after a reconnect).
                        let first = b * 3 + 1 - u64::from(b % 2 == 1);
                        let batch: Vec<_> = (first..=b * 3 + 3).map(|s| event(s, a)).collect();
                        let (r, back) = ingest.ingest(&id, 1, b * 3 + 3, batch);
                        let r = r.unwrap();
                        assert_eq!((r.stored, r.mark), (3, b * 3 + 3), "agent {a} batch {b}");
                        assert_eq!(
                            back.first().map(|e| e.0),
                            Some(first),
                            "the batch comes back"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (groups, batches) = ingest.commits();
        assert_eq!(batches, AGENTS as u64 * BATCHES);
        assert!(
            groups < batches,
            "batches queued behind two connections share commits ({groups} commits for {batches} batches)"
        );
        // A group with one stale batch: the others are stored all the same.
        let mut conn = palisade_store::fleet::open(&url).unwrap();
        let (id0, id1) = (format!("{tag}id0"), format!("{tag}id1"));
        let next = BATCHES * 3 + 1;
        let (b0, b1) = (vec![event(next, 0)], vec![event(next, 1)]);
        let jobs = [
            IngestJob {
                id: &id0,
                epoch: 1,
                last_seq: next,
                events: &b0,
            },
            IngestJob {
                id: &id1,
                epoch: 9,
                last_seq: next,
                events: &b1,
            },
        ];
        let r = store_group(conn.as_mut(), &jobs);
        assert_eq!(
            r[0].as_ref().ok(),
            Some(&Ingested {
                stored: 1,
                mark: next
            })
        );
        assert!(r[1].is_err(), "a batch of another epoch is refused");
        let mut s = lock(&shared);
        assert_eq!(s.high_water(&id1, 1).unwrap(), BATCHES * 3);
        assert_eq!(
            s.host_event_count(&format!("{tag}h0")).unwrap(),
            BATCHES * 3 + 1
        );
        for a in 1..AGENTS {
            assert_eq!(
                s.host_event_count(&format!("{tag}h{a}")).unwrap(),
                BATCHES * 3
            );
            assert_eq!(
                s.high_water(&format!("{tag}id{a}"), 1).unwrap(),
                BATCHES * 3
            );
        }
    }
}
