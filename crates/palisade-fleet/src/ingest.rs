//! Where the server stores agents' batches (issue 16's ingest target).
//!
//! PostgreSQL: a small pool of its own connections ([`INGEST_CONNECTIONS`]), so batches of
//! different agents are stored in parallel; one agent's batches stay in order because its
//! session stores a batch and acknowledges it before reading the next one (and the agent's
//! row is locked in each ingest transaction). SQLite stays one writer: batches go through the
//! server's one store connection.
//!
//! Either way the time a batch waits for its store connection is measured: while batches are
//! waiting and the last one waited more than [`INGEST_BUSY_WAIT`], the server is "saturated"
//! and new connections are asked to come back later ([`crate::overload`]). A wait time, not a
//! count of waiting sessions: after a server's death a thousand reconnecting agents each
//! send a small batch at once, which is many waiters but no real overload (the first
//! benchmark of that scenario, with a count of 256, turned the agents away for nothing).

use palisade_store::fleet::{FleetStore, Ingested, ShippedEvent};
use palisade_store::StoreError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Store connections for ingest on PostgreSQL (measured in bench/fleet/RESULTS.md).
pub const INGEST_CONNECTIONS: usize = 4;
/// A wait for a store connection beyond which ingest counts as saturated.
pub const INGEST_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

type SharedStore = Arc<Mutex<Box<dyn FleetStore>>>;

enum Kind {
    /// The server's one connection (SQLite).
    Shared(SharedStore),
    /// Own connections, each used by one batch at a time.
    Pool {
        free: Mutex<Vec<Box<dyn FleetStore>>>,
        ready: Condvar,
    },
}

/// The ingest path.
pub struct Ingest {
    kind: Kind,
    waiting: AtomicUsize,
    /// How long the last batch waited for its connection (ms).
    last_wait_ms: AtomicU64,
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
            let mut v = Vec::with_capacity(connections);
            for _ in 0..connections {
                v.push(palisade_store::fleet::open(url)?);
            }
            Kind::Pool {
                free: Mutex::new(v),
                ready: Condvar::new(),
            }
        } else {
            Kind::Shared(shared)
        };
        Ok(Ingest {
            kind,
            waiting: AtomicUsize::new(0),
            last_wait_ms: AtomicU64::new(0),
        })
    }

    /// Connections used for ingest.
    pub fn connections(&self) -> usize {
        match &self.kind {
            Kind::Shared(_) => 1,
            Kind::Pool { free, .. } => free.lock().map(|v| v.len()).unwrap_or(0),
        }
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

    /// Stores one batch ([`FleetStore::ingest`]). Blocking: the session runs it with
    /// `spawn_blocking` and keeps pushing bans meanwhile.
    pub fn ingest(
        &self,
        id: &str,
        epoch: u64,
        last_seq: u64,
        batch: &[ShippedEvent],
    ) -> Result<Ingested, StoreError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _w = Waiting(&self.waiting);
        let since = Instant::now();
        match &self.kind {
            Kind::Shared(s) => {
                let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                self.waited(since);
                g.ingest(id, epoch, last_seq, batch)
            }
            Kind::Pool { free, ready } => {
                let mut conn = {
                    let mut g = free.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(c) = g.pop() {
                            self.waited(since);
                            break c;
                        }
                        g = ready.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let r = conn.ingest(id, epoch, last_seq, batch);
                free.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                ready.notify_one();
                r
            }
        }
    }
}

struct Waiting<'a>(&'a AtomicUsize);
impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
