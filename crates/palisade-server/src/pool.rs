//! A small pool of store connections for request handlers. The store API is synchronous, so
//! every call runs on a blocking thread; the pool hands out whichever connection is free.

use crate::error::ApiError;
use palisade_store::{Store, StoreError};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Upper bounds (seconds) of the store latency histogram buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Latency of store calls made by the API (for `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Cumulative count per bucket of [`LATENCY_BUCKETS`] (plus +Inf last).
    pub buckets: [AtomicU64; 11],
    /// Sum in microseconds.
    pub sum_micros: AtomicU64,
    /// Calls.
    pub count: AtomicU64,
    /// Failed calls.
    pub errors: AtomicU64,
}

impl Latency {
    fn observe(&self, secs: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.buckets[10].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

/// Store connections shared by handlers.
#[derive(Clone)]
pub(crate) struct StorePool {
    conns: Arc<Vec<Mutex<Box<dyn Store>>>>,
    next: Arc<AtomicUsize>,
    /// Latency of calls through the pool.
    pub latency: Arc<Latency>,
}

impl StorePool {
    /// Opens `n` connections (migrating the database on the first).
    pub fn open(url: &str, n: usize) -> Result<Self, StoreError> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(Mutex::new(palisade_store::open(url)?));
        }
        Ok(StorePool {
            conns: Arc::new(conns),
            next: Arc::new(AtomicUsize::new(0)),
            latency: Arc::default(),
        })
    }

    /// Runs `f` on a free connection, on the calling thread.
    pub fn with_sync<T>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Relaxed);
        let t0 = Instant::now();
        let mut guard = None;
        for i in 0..n {
            if let Ok(g) = self.conns[(start + i) % n].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => self.conns[start % n]
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        };
        let r = f(guard.as_mut());
        drop(guard);
        self.latency.observe(t0.elapsed().as_secs_f64());
        if r.is_err() {
            self.latency.errors.fetch_add(1, Relaxed);
        }
        r
    }

    /// Runs `f` on a free connection on a blocking thread.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.with_sync(f))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::from)
    }
}
