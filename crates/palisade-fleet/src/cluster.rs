//! Several `role = "server"` processes on one PostgreSQL (issue 18). Each serves its own
//! agents; PostgreSQL is the system of record (agents, marks, events, the ban log) and the
//! only thing they share. See `palisade_store::cluster` for the store side.
//!
//! - **Identity.** Agents pin ONE certificate fingerprint (from their token), whichever server
//!   they reach, so every server of the fleet presents the same certificate: the first server
//!   (or `palisade fleet token add`) stores its certificate and key in `fleet_state`
//!   (`server_identity`, insert-if-absent, so of two servers starting at once one wins) and
//!   every server writes the stored pair over its own `<state_dir>/fleet/server.{crt,key}`
//!   and uses it ([`server_cert`]). Servers keep no state of their own.
//! - **Ban log.** [`Cluster`] runs a listener thread (LISTEN `palisade_fleet_log`, its own
//!   connection) that wakes the server's poller when any process appends; the poller still
//!   reads by sequence every 500 ms, so a lost notification costs at most that.
//! - **Correlation once.** A correlator thread per server bids for the session advisory lock
//!   every [`RETRY`]; the holder tails every agent's events from the `events` table by id
//!   (whichever server stored them), corrects their time by the agent's stored clock offset,
//!   runs the fleet jails and appends the detections. On taking over it starts from a fresh
//!   correlator, notes the fleet bans in force (so it does not ban again), then warms up from
//!   the events stored within the longest fleet-jail `find_time` (plus the largest clock
//!   offset and a minute), so an attack in progress is still caught; afterwards it follows the
//!   ban log (bans noted, unbans forgotten). It checks every second that it still holds the
//!   lock and stops correlating at once when it does not.

use crate::server::EventSink;
use crate::tls::ServerCert;
use crate::FleetError;
use palisade_core::Timestamp;
use palisade_store::cluster::{Candidate, EventTail, Listener};
use palisade_store::fleet::{FleetLogEntry, FleetStore};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a server that is not the correlator bids for the lock (and how long a dead
/// holder's successor waits at most, once PostgreSQL has dropped its connection).
pub const RETRY: Duration = Duration::from_secs(1);
/// How often the correlator reads the events when it has caught up.
pub const TAIL_EVERY: Duration = Duration::from_millis(200);
/// Rows per read of the event tail.
const TAIL_BATCH: u32 = 5000;
/// The `fleet_state` key of the shared certificate.
const IDENTITY_KEY: &str = "server_identity";

/// The server certificate: this host's own (`<state_dir>/fleet/server.{crt,key}`, created on
/// first need), or on a shared store the fleet's, which replaces it.
pub fn server_cert(state_dir: &Path, store: &mut dyn FleetStore) -> Result<ServerCert, FleetError> {
    let own = crate::tls::server_cert(state_dir)?;
    if !store.is_shared() {
        return Ok(own);
    }
    let dir = crate::ident::fleet_dir(state_dir);
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| FleetError::Io(format!("{}: {e}", p.display())))
    };
    let mine = serde_json::json!({ "cert": read(&crt)?, "key": read(&key)? }).to_string();
    let stored = store.state_init(IDENTITY_KEY, &mine)?;
    if stored == mine {
        return Ok(own);
    }
    let v: serde_json::Value = serde_json::from_str(&stored)
        .map_err(|e| FleetError::Tls(format!("the fleet's stored certificate: {e}")))?;
    let (Some(c), Some(k)) = (v["cert"].as_str(), v["key"].as_str()) else {
        return Err(FleetError::Tls(
            "the fleet's stored certificate lacks its cert or key".into(),
        ));
    };
    // Key first: a crash in between leaves no certificate without its key.
    crate::ident::write_private(&key, k.as_bytes())?;
    crate::ident::write_private(&crt, c.as_bytes())?;
    let shared = crate::tls::server_cert(state_dir)?;
    tracing::info!(fingerprint = %shared.fingerprint, "fleet: using the fleet's shared server certificate from the store");
    Ok(shared)
}

/// The threads of a server on a shared store; stopped when dropped.
pub struct Cluster {
    stop: Arc<AtomicBool>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sleeps `d` in short steps; false when asked to stop.
fn nap(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    !stop.load(Ordering::Relaxed)
}

/// Starts the listener (which calls `wake` on every notification and after each
/// (re)connection) and, with a sink, the correlator bidding for the lock.
pub fn start(
    url: &str,
    wake: Arc<dyn Fn() + Send + Sync>,
    sink: Option<Box<dyn EventSink>>,
) -> Result<Cluster, FleetError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (u, s) = (url.to_string(), stop.clone());
    std::thread::Builder::new()
        .name("fleet-listen".into())
        .spawn(move || listen(&u, &*wake, &s))
        .map_err(|e| FleetError::Io(e.to_string()))?;
    if let Some(sink) = sink {
        let (u, s) = (url.to_string(), stop.clone());
        std::thread::Builder::new()
            .name("fleet-correlate".into())
            .spawn(move || correlate(&u, sink, &s))
            .map_err(|e| FleetError::Io(e.to_string()))?;
    }
    Ok(Cluster { stop })
}

fn listen(url: &str, wake: &(dyn Fn() + Send + Sync), stop: &AtomicBool) {
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        let mut l = match Listener::connect(url) {
            Ok(l) => l,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "fleet: the ban log listener cannot connect (polling continues); retrying");
                    warned = true;
                }
                nap(stop, Duration::from_secs(2));
                continue;
            }
        };
        warned = false;
        // Whatever was appended while not listening.
        wake();
        while !stop.load(Ordering::Relaxed) {
            match l.wait(Duration::from_millis(500)) {
                Ok(true) => wake(),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "fleet: the ban log listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

fn correlate(url: &str, mut sink: Box<dyn EventSink>, stop: &AtomicBool) {
    let mut cand: Option<Candidate> = None;
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        if cand.is_none() {
            match Candidate::connect(url) {
                Ok(c) => cand = Some(c),
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "fleet: the correlator election cannot connect; retrying");
                        warned = true;
                    }
                    nap(stop, RETRY);
                    continue;
                }
            }
        }
        let c = cand.as_mut().expect("connected above");
        match c.try_lead() {
            Ok(true) => {
                warned = false;
                let why = lead(url, c, sink.as_mut(), stop);
                if !stop.load(Ordering::Relaxed) {
                    tracing::warn!(why = %why, "fleet: this server stopped correlating; another one takes over");
                }
                // A fresh connection: whatever it held is released with the old one.
                cand = None;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "fleet: bidding for the correlator lock");
                cand = None;
            }
        }
        nap(stop, RETRY);
    }
}

/// Agents' clock offsets (µs) by name, from the store.
fn offsets(store: &mut dyn FleetStore) -> HashMap<String, i64> {
    match store.agents() {
        Ok(v) => v
            .into_iter()
            .filter(|a| !a.revoked)
            .map(|a| (a.name, a.clock_offset_ms.unwrap_or(0).saturating_mul(1000)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "fleet: reading agents' clock offsets");
            HashMap::new()
        }
    }
}

/// Correlates while this server holds the lock; returns why it stopped.
fn lead(url: &str, cand: &mut Candidate, sink: &mut dyn EventSink, stop: &AtomicBool) -> String {
    let mut store = match palisade_store::fleet::open(url) {
        Ok(s) => s,
        Err(e) => return format!("opening the store: {e}"),
    };
    sink.reset();
    let now = crate::now();
    // The log head first, then the bans in force: entries appended in between are read
    // again below (noting a ban twice is harmless).
    let mut log_cursor = match store.log_head() {
        Ok(h) => h,
        Err(e) => return format!("reading the ban log: {e}"),
    };
    let noted = match note_bans_in_force(store.as_mut(), sink, now) {
        Ok(n) => n,
        Err(e) => return format!("reading the fleet bans in force: {e}"),
    };
    let mut offs = offsets(store.as_mut());
    let skew = offs.values().map(|o| o.unsigned_abs()).max().unwrap_or(0);
    let span = sink
        .horizon()
        .saturating_add(Duration::from_micros(skew))
        .saturating_add(Duration::from_secs(60));
    let since = Timestamp(now.0.saturating_sub(span.as_micros() as i64));
    let mut tail = match EventTail::connect(url, since) {
        Ok(t) => t,
        Err(e) => return format!("opening the event tail: {e}"),
    };
    tracing::info!(
        bans_in_force = noted,
        warm_up_secs = span.as_secs(),
        from_id = tail.head() + 1,
        "fleet: this server is the correlator"
    );
    let mut warming = true;
    let mut warm_events = 0u64;
    let mut checked = Instant::now();
    let mut offs_at = Instant::now();
    let mut given_up = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return "stopping".into();
        }
        if checked.elapsed() >= RETRY {
            if !cand.still_leads() {
                return "the correlator lock is lost (connection to PostgreSQL)".into();
            }
            checked = Instant::now();
        }
        if offs_at.elapsed() >= Duration::from_secs(5) {
            offs = offsets(store.as_mut());
            offs_at = Instant::now();
        }
        // Bans and unbans appended by anyone (ourselves included).
        loop {
            match store.log_since(log_cursor, 1000) {
                Ok(v) if !v.is_empty() => {
                    log_cursor = v.last().map_or(log_cursor, |e| e.seq);
                    for e in &v {
                        sink.log_entry(e);
                    }
                }
                Ok(_) => break,
                Err(e) => return format!("reading the ban log: {e}"),
            }
        }
        let batch = match tail.poll(TAIL_BATCH) {
            Ok(b) => b,
            Err(e) => return format!("reading events: {e}"),
        };
        let full = batch.len() >= TAIL_BATCH as usize;
        let mut out = Vec::new();
        for mut ev in batch {
            let off = offs.get(&ev.host).copied().unwrap_or(0);
            ev.event.time = Timestamp(ev.event.time.0.saturating_sub(off));
            out.extend(sink.observe(&ev.host, &ev.jail, &ev.event));
            warm_events += u64::from(warming);
        }
        let out = crate::server::drop_allowlisted(store.as_mut(), out);
        for entry in &out {
            if let Err(e) = store.log_append(entry) {
                tracing::warn!(error = %e, "fleet: appending a correlated ban");
            }
        }
        let st = tail.stats();
        if st.given_up > given_up {
            tracing::warn!(
                ids = st.given_up - given_up,
                "fleet: event ids never committed within the wait (rolled back or lost with a server); skipped"
            );
            given_up = st.given_up;
        }
        if !full {
            if warming {
                warming = false;
                tracing::info!(events = warm_events, "fleet: correlator warmed up");
            }
            if !nap(stop, TAIL_EVERY) {
                return "stopping".into();
            }
        }
    }
}

/// Tells the sink about the fleet bans in force at `now` (server start, takeover); returns
/// how many.
pub fn note_bans_in_force(
    store: &mut dyn FleetStore,
    sink: &mut dyn EventSink,
    now: Timestamp,
) -> Result<usize, palisade_store::StoreError> {
    let bans = store.active_bans(now)?;
    for e in &bans {
        sink.log_entry(e);
    }
    Ok(bans.len())
}

/// What a correlator does with a ban log entry: a fleet-wide ban in force is noted (not
/// detected again while it lasts), an unban (a ban lifted by hand) forgets the target.
pub fn track(corr: &mut palisade_detect::correlate::Correlator, e: &FleetLogEntry) {
    if e.action == "unban" {
        corr.forget(&e.target);
        return;
    }
    if e.action != "ban" || e.scope.is_some() {
        return;
    }
    let names: Vec<String> = corr.specs().map(|s| s.name.clone()).collect();
    if names.contains(&e.jail) {
        corr.note_ban(&e.jail, e.target, e.expires);
    } else {
        // Banned on every agent by other means (a reviewed block list, an agent's shared
        // local ban): no fleet jail needs to ban it again.
        for n in &names {
            corr.note_ban(n, e.target, e.expires);
        }
    }
}
