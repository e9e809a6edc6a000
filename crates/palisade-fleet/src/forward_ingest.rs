//! The server side of forwarded raw lines (`[fleet] role = "forwarder"` hosts).
//!
//! A forwarder declares its jails (`forward`), then sends `lines` batches of one (jail, file)
//! stream each. The server runs the filter of its OWN `[[jail]]` of that name (its
//! administrator controls filters and thresholds), stores the resulting events with
//! `host` = the forwarder's name and the stream's new mark in ONE transaction
//! ([`FleetStore::ingest_stream`]; lines at or below the mark are a resend and skipped), and
//! acknowledges the mark (`lines_ack`). Lines that match nothing still move the mark.
//!
//! Detection is per forwarder host with the server's jail settings (one [`Engine`] per
//! forwarder, built from the server's `[[jail]]`, `[defaults]`, `[escalation]`,
//! `[recidive]` and `[allowlist]`): the bans local detection on that host would take. A ban
//! goes to the fleet ban log for that forwarder only (`scope` = its name), or for every
//! agent when `[fleet] share_bans` is on, like an agent's own bans; its origin is the server
//! (so the forwarder itself gets it, and applies it with origin `fleet`).
//!
//! Filters and detection are synchronous and run on the session's task through
//! `block_in_place` (no tokio inside them). A forwarder may only send lines of the jails it
//! declared and that this server has; a line's content is only ever read by the filter,
//! which alone decides which address it blames.

use palisade_core::{Event, Timestamp};
use palisade_detect::{Action, Engine, EngineConfig};
use palisade_filter::{Filter, LineCtx};
use palisade_proto::fleet::ServerMsg;
use palisade_store::fleet::{FleetLogEntry, FleetStore, ShippedEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// What the server needs to take forwarded lines: the filters of its own enabled jails, by
/// name, and its detection settings (the binary builds both from the configuration, as the
/// daemon does).
pub struct ForwardSetup {
    /// `(jail name, its filter)`.
    pub filters: Vec<(String, Box<dyn Filter>)>,
    /// Detection settings (jails by the same names).
    pub engine: EngineConfig,
}

/// Most distinct files one forwarder connection may send lines of.
pub const MAX_FILES_PER_CONNECTION: usize = 4096;

/// Most stored events a forwarder's detection is warmed up with.
const WARM_UP_MAX: u32 = 100_000;

/// Most forwarders whose detection state is kept (the least recently active is dropped
/// beyond it).
const MAX_ENGINES: usize = 10_000;

/// The server's forwarded-line ingest (shared by every session).
pub(crate) struct ForwardIngest {
    filters: Mutex<HashMap<String, Box<dyn Filter>>>,
    engine_cfg: EngineConfig,
    /// Per forwarder name: its detection and when it was last used (µs).
    engines: Mutex<HashMap<String, (Engine, i64)>>,
}

/// One connection's forwarder state.
#[derive(Default)]
pub(crate) struct ForwardSession {
    /// (epoch, declared jails).
    declared: Option<(u64, HashSet<String>)>,
    files: HashSet<(String, String)>,
}

/// What one `lines` batch did.
pub(crate) struct Ingested {
    /// The acknowledgement to send.
    pub ack: ServerMsg,
    /// The events stored (for the correlator).
    pub fresh: Vec<ShippedEvent>,
    /// Fleet bans to append.
    pub bans: Vec<FleetLogEntry>,
}

/// A `lines` batch as received.
pub(crate) struct Batch {
    pub jail: String,
    pub file: String,
    pub epoch: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub lines: Vec<String>,
}

/// The stream key of (jail, file) in the store's marks.
fn stream_of(jail: &str, file: &str) -> String {
    format!("{jail}\t{file}")
}

impl ForwardIngest {
    pub(crate) fn new(setup: ForwardSetup) -> ForwardIngest {
        ForwardIngest {
            filters: Mutex::new(setup.filters.into_iter().collect()),
            engine_cfg: setup.engine,
            engines: Mutex::new(HashMap::new()),
        }
    }

    /// A forwarder's declaration: every jail must be one of this server's.
    pub(crate) fn declare(
        &self,
        sess: &mut ForwardSession,
        epoch: u64,
        jails: Vec<String>,
    ) -> Result<(), String> {
        if sess.declared.is_some() {
            return Err("forward: declared twice on one connection".into());
        }
        let filters = self.filters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(j) = jails.iter().find(|j| !filters.contains_key(j.as_str())) {
            let mut known: Vec<&str> = filters.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!(
                "forward: this server has no enabled [[jail]] named {j:?} to filter its lines (known: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ));
        }
        sess.declared = Some((epoch, jails.into_iter().collect()));
        Ok(())
    }

    /// One batch: filter the lines above the stream's mark, store their events and the new
    /// mark in one transaction, detect. Blocking (call through `block_in_place`). An error
    /// ends the connection (its text is the close reason); nothing is acknowledged then,
    /// so the forwarder sends the batch again.
    pub(crate) fn lines(
        &self,
        store: &Mutex<Box<dyn FleetStore>>,
        sess: &mut ForwardSession,
        agent_id: &str,
        host: &str,
        share_bans: bool,
        b: Batch,
    ) -> Result<Ingested, String> {
        let Some((epoch, jails)) = &sess.declared else {
            return Err("lines before forward".into());
        };
        if b.epoch != *epoch {
            return Err("lines of another epoch than declared".into());
        }
        if !jails.contains(&b.jail) {
            return Err(format!("lines of an undeclared jail {:?}", b.jail));
        }
        let key = (b.jail.clone(), b.file.clone());
        if !sess.files.contains(&key) {
            if sess.files.len() >= MAX_FILES_PER_CONNECTION {
                return Err(format!(
                    "lines of more than {MAX_FILES_PER_CONNECTION} files on one connection"
                ));
            }
            sess.files.insert(key);
        }
        let stream = stream_of(&b.jail, &b.file);
        let lock = || store.lock().unwrap_or_else(|e| e.into_inner());
        let mut bans = self.ensure_engine(store, host, share_bans);
        let mark = lock()
            .stream_mark(agent_id, &stream, b.epoch)
            .map_err(|e| e.to_string())?;
        // Filter what is above the mark (a resend is not filtered again).
        let now = crate::now();
        let ctx = LineCtx {
            now,
            source_time: None,
            journal: None,
        };
        let mut events: Vec<ShippedEvent> = Vec::new();
        {
            let mut filters = self.filters.lock().unwrap_or_else(|e| e.into_inner());
            let Some(filter) = filters.get_mut(&b.jail) else {
                return Err(format!("no filter for jail {:?}", b.jail));
            };
            let mut out: Vec<Event> = Vec::new();
            for (i, line) in b.lines.iter().enumerate() {
                let seq = b.first_seq + i as u64;
                if seq <= mark {
                    continue;
                }
                filter.process(line.as_bytes(), &ctx, &mut out);
                events.extend(out.drain(..).map(|e| (seq, b.jail.clone(), e)));
            }
        }
        let r = lock()
            .ingest_stream(agent_id, &stream, b.epoch, b.last_seq, &events)
            .map_err(|e| e.to_string())?;
        // Only what this transaction stored (another connection of the forwarder may have
        // stored part of it in between).
        events.retain(|e| e.0 > r.before);
        bans.extend(self.detect(host, share_bans, &events, now));
        Ok(Ingested {
            ack: ServerMsg::LinesAck {
                jail: b.jail,
                file: b.file,
                seq: r.mark,
                credit: crate::CREDIT,
            },
            fresh: events,
            bans,
        })
    }

    /// Makes sure the forwarder has its engine. A new one (the first batch since the server
    /// started, or after eviction) is warmed up like the daemon's after a restart: the fleet
    /// bans in force for the forwarder are restored, and its failures stored within the
    /// longest `find_time` are counted again (not those before a ban in force of their
    /// address, which that ban consumed). Bans this reaches (the server stopped between
    /// storing a batch and logging its ban) are returned, unless already over.
    fn ensure_engine(
        &self,
        store: &Mutex<Box<dyn FleetStore>>,
        host: &str,
        share_bans: bool,
    ) -> Vec<FleetLogEntry> {
        let now = crate::now();
        let mut engines = self.engines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, used)) = engines.get_mut(host) {
            *used = now.0;
            return Vec::new();
        }
        if engines.len() >= MAX_ENGINES {
            if let Some(oldest) = engines
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                engines.remove(&oldest);
            }
        }
        let mut engine = Engine::new(self.engine_cfg.clone());
        let find = engine
            .config()
            .jails
            .iter()
            .map(|j| j.find_time)
            .max()
            .unwrap_or_default();
        let (events, active) = {
            let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
            let events = s
                .host_events_since(host, now.minus(find), WARM_UP_MAX)
                .unwrap_or_else(|e| {
                    tracing::warn!(forwarder = %host, error = %e, "fleet: forwarded lines: stored events unreadable; failure counts start afresh");
                    Vec::new()
                });
            let active = s
                .active_bans_for(now, host, i64::MAX)
                .unwrap_or_else(|e| {
                    tracing::warn!(forwarder = %host, error = %e, "fleet: forwarded lines: fleet bans unreadable for the warm-up");
                    Vec::new()
                });
            (events, active)
        };
        let mut consumed: HashMap<ipnet::IpNet, Timestamp> = HashMap::new();
        for b in &active {
            let t = consumed.entry(b.target.trunc()).or_insert(b.created);
            *t = (*t).max(b.created);
        }
        let mut lens: Vec<u8> = consumed.keys().map(ipnet::IpNet::prefix_len).collect();
        lens.sort_unstable();
        lens.dedup();
        engine.restore(
            active.into_iter().map(|b| palisade_core::Decision {
                id: 0,
                target: b.target,
                jail: b.jail,
                origin: palisade_core::Origin::Fleet,
                reason: b.reason,
                created: b.created,
                expires: b.expires,
                simulated: false,
                level: 0,
            }),
            std::iter::empty(),
        );
        let warm: Vec<ShippedEvent> = events
            .into_iter()
            .filter(|e| {
                !lens.iter().any(|&len| {
                    ipnet::IpNet::new(e.event.ip, len)
                        .ok()
                        .and_then(|n| consumed.get(&n.trunc()))
                        .is_some_and(|&created| e.event.time <= created)
                })
            })
            .map(|e| (0, e.jail, e.event))
            .collect();
        let n = warm.len();
        engines.insert(host.to_string(), (engine, now.0));
        drop(engines);
        let bans: Vec<FleetLogEntry> = self
            .detect(host, share_bans, &warm, now)
            .into_iter()
            .filter(|b| b.expires.is_none_or(|x| x > now))
            .collect();
        if n > 0 {
            tracing::info!(forwarder = %host, events = n, bans = bans.len(), "fleet: forwarded lines: detection warmed up from stored events");
        }
        bans
    }

    /// Runs the forwarder's detection over freshly stored events.
    fn detect(
        &self,
        host: &str,
        share_bans: bool,
        events: &[ShippedEvent],
        now: Timestamp,
    ) -> Vec<FleetLogEntry> {
        let mut engines = self.engines.lock().unwrap_or_else(|e| e.into_inner());
        if !engines.contains_key(host) && engines.len() >= MAX_ENGINES {
            if let Some(oldest) = engines
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                engines.remove(&oldest);
            }
        }
        let (engine, used) = engines
            .entry(host.to_string())
            .or_insert_with(|| (Engine::new(self.engine_cfg.clone()), now.0));
        *used = now.0;
        let mut actions = Vec::new();
        engine.expire(now, &mut actions);
        actions.clear();
        let mut bans = Vec::new();
        for (_, jail, ev) in events {
            let Some(i) = engine.jail_index(jail) else {
                continue;
            };
            engine.observe(i, ev, &mut actions);
            for a in actions.drain(..) {
                let Action::Ban(d) = a else { continue };
                if d.simulated {
                    tracing::info!(forwarder = %host, target = %d.target, jail = %d.jail, "fleet: forwarded lines: ban simulated (dry run)");
                    continue;
                }
                tracing::info!(forwarder = %host, target = %d.target, jail = %d.jail, "fleet: forwarded lines: ban");
                bans.push(FleetLogEntry {
                    seq: 0,
                    action: "ban".into(),
                    target: d.target,
                    jail: d.jail.clone(),
                    reason: format!("{host}: {}", d.reason),
                    created: d.created,
                    expires: d.expires,
                    origin: None,
                    scope: (!share_bans).then(|| vec![host.to_string()]),
                });
            }
        }
        bans
    }
}
