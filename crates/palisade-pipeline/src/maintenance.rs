//! Store housekeeping on its own thread: at start and then hourly, [`Store::maintain`]
//! creates the coming days' event partitions (PostgreSQL) and applies `[store] retention`.
//!
//! The thread has its own store connection, so detection never waits for it: the engine
//! talks to the store writer thread only, and the writer waits at most for one retention
//! batch (SQLite's write lock; a partition drop on PostgreSQL, bounded by a lock timeout).

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use palisade_core::Clock;
use palisade_store::Store;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often maintenance runs (also once at start).
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// The running maintenance thread. Dropping it (or [`Maintainer::stop`]) stops the thread
/// after the bounded step it may be in.
pub struct Maintainer {
    retention: Arc<AtomicU64>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Maintainer {
    /// Starts the thread for the store at `url` (already opened and migrated by the caller;
    /// the thread opens its own connection). `retention` zero keeps events forever. An
    /// in-memory SQLite store cannot be shared with a second connection: nothing is started.
    pub fn start(
        url: String,
        retention: Duration,
        every: Duration,
        clock: Arc<dyn Clock>,
    ) -> Maintainer {
        let keep = Arc::new(AtomicU64::new(retention.as_secs()));
        if matches!(
            palisade_store::StoreUrl::parse(&url),
            Ok(palisade_store::StoreUrl::SqliteMemory)
        ) {
            return Maintainer {
                retention: keep,
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = bounded::<()>(0);
        let thread = {
            let keep = keep.clone();
            std::thread::Builder::new()
                .name("store maintenance".into())
                .spawn(move || run(&url, &keep, every, &*clock, &stopped))
                .expect("spawn store maintenance thread")
        };
        Maintainer {
            retention: keep,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Changes the retention (a reload); the next run applies it.
    pub fn set_retention(&self, retention: Duration) {
        self.retention.store(retention.as_secs(), Relaxed);
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// True once the owner dropped its end of the stop channel.
fn stopped(rx: &Receiver<()>) -> bool {
    matches!(
        rx.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    )
}

fn run(url: &str, keep: &AtomicU64, every: Duration, clock: &dyn Clock, stop: &Receiver<()>) {
    let mut store: Option<Box<dyn Store>> = None;
    loop {
        if store.is_none() {
            match palisade_store::open(url) {
                Ok(s) => store = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "store maintenance: cannot open the store; retried at the next run")
                }
            }
        }
        if let Some(s) = store.as_deref_mut() {
            let retention = Duration::from_secs(keep.load(Relaxed));
            if let Err(e) = maintain(s, clock, retention, stop) {
                tracing::warn!(error = %e, "store maintenance failed; retried at the next run");
            }
        }
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// One run: calls [`Store::maintain`] until it has nothing more to do (or a stop is asked),
/// logging what it removed.
pub fn maintain(
    store: &mut dyn Store,
    clock: &dyn Clock,
    retention: Duration,
    stop: &Receiver<()>,
) -> Result<palisade_store::Maintenance, palisade_store::StoreError> {
    let mut total = palisade_store::Maintenance::default();
    loop {
        let r = store.maintain(clock.now(), Some(retention))?;
        total.cutoff = r.cutoff;
        total.rows_deleted += r.rows_deleted;
        total.timeline_rows_deleted += r.timeline_rows_deleted;
        total.partitions_dropped += r.partitions_dropped;
        total.partitions_created += r.partitions_created;
        total.pages_freed += r.pages_freed;
        total.more = r.more;
        if !r.more || stopped(stop) {
            break;
        }
    }
    if total.rows_deleted + total.partitions_dropped + total.partitions_created > 0 {
        tracing::info!(
            cutoff = ?total.cutoff.map(|t| t.to_string()),
            rows_deleted = total.rows_deleted,
            timeline_rows_deleted = total.timeline_rows_deleted,
            partitions_dropped = total.partitions_dropped,
            partitions_created = total.partitions_created,
            pages_freed = total.pages_freed,
            "store maintenance"
        );
    } else {
        tracing::debug!(cutoff = ?total.cutoff.map(|t| t.to_string()), "store maintenance: nothing to do");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{Event, FixedClock, Timestamp};

    const DAY: i64 = 86_400 * Timestamp::MICROS;

    fn event(time: Timestamp) -> Event {
        Event {
            time,
            ip: "203.0.113.9".parse().unwrap(),
            filter: Arc::from("sshd"),
            rule: Arc::from("failed_password"),
            failure: true,
            user: None,
            fields: Vec::new(),
            evidence: Event::evidence_of(b"Failed password"),
        }
    }

    fn count(url: &str) -> usize {
        palisade_store::open(url)
            .unwrap()
            .events(&palisade_store::EventQuery {
                limit: Some(1000),
                ..Default::default()
            })
            .unwrap()
            .len()
    }

    /// The thread applies the retention at start on its own connection, takes a reload's
    /// new retention at its next run, and stops when asked.
    #[test]
    fn thread_applies_retention_at_start_and_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("p.db").display());
        let now = Timestamp(1_767_225_600 * Timestamp::MICROS + DAY / 2);
        let mut s = palisade_store::open(&url).unwrap();
        let batch: Vec<Event> = [40, 20, 5, 0]
            .iter()
            .map(|d| event(Timestamp(now.0 - d * DAY)))
            .collect();
        s.record_events("sshd", &batch).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(now));
        let m = Maintainer::start(
            url.clone(),
            Duration::from_secs(30 * 86400),
            Duration::from_millis(50),
            clock,
        );
        let wait_for = |n: usize| {
            for _ in 0..600 {
                if count(&url) == n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("events never went down to {n} (now {})", count(&url));
        };
        wait_for(3);
        m.set_retention(Duration::from_secs(10 * 86400));
        wait_for(2);
        // 0 keeps everything from now on.
        m.set_retention(Duration::ZERO);
        m.stop();
        let h = s
            .ip_history("203.0.113.9".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(h.events, 4, "totals stay");
    }

    #[test]
    fn memory_store_gets_no_thread() {
        let m = Maintainer::start(
            "sqlite::memory:".into(),
            Duration::from_secs(86400),
            MAINTENANCE_EVERY,
            Arc::new(FixedClock(Timestamp(0))),
        );
        assert!(m.thread.is_none());
    }

    #[test]
    fn one_run_reports_what_it_removed() {
        let mut s = palisade_store::open("sqlite::memory:").unwrap();
        let now = Timestamp(1_767_225_600 * Timestamp::MICROS);
        s.record_events("sshd", &[event(Timestamp(now.0 - 3 * DAY)), event(now)])
            .unwrap();
        let (_tx, rx) = bounded::<()>(0);
        let r = maintain(&mut *s, &FixedClock(now), Duration::from_secs(86400), &rx).unwrap();
        assert_eq!((r.rows_deleted, r.more), (1, false));
        assert_eq!(r.cutoff, Some(Timestamp(now.0 - DAY)));
    }
}
