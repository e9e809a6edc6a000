//! Where the server stores agents' batches (issue 16's ingest target).
//!
//! PostgreSQL: a small pool of its own connections ([`INGEST_CONNECTIONS`]), so batches of
//! different agents are stored in parallel; one agent's batches stay in order because its
//! session stores a batch and acknowledges it before reading the next one (and the agent's
//! row is locked in each ingest transaction). SQLite stays one writer: batches go through the
//! server's one store connection.
//!
//! Either way the number of sessions waiting to store a batch is counted: past
//! [`INGEST_BUSY_WAITING`] the server is "saturated" and new connections are asked to come back
//! later ([`crate::overload`]).

use palisade_store::fleet::{FleetStore, Ingested, ShippedEvent};
use palisade_store::StoreError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Store connections for ingest on PostgreSQL (measured in bench/fleet/RESULTS.md).
pub const INGEST_CONNECTIONS: usize = 4;
/// Sessions waiting to store a batch beyond which ingest counts as saturated.
pub const INGEST_BUSY_WAITING: usize = 256;

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
        self.waiting() > INGEST_BUSY_WAITING
    }

    /// Stores one batch ([`FleetStore::ingest`]). Blocking: call from `block_in_place`.
    pub fn ingest(
        &self,
        id: &str,
        epoch: u64,
        last_seq: u64,
        batch: &[ShippedEvent],
    ) -> Result<Ingested, StoreError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _w = Waiting(&self.waiting);
        match &self.kind {
            Kind::Shared(s) => {
                let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                g.ingest(id, epoch, last_seq, batch)
            }
            Kind::Pool { free, ready } => {
                let mut conn = {
                    let mut g = free.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(c) = g.pop() {
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
