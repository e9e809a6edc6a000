//! `palisade status` and `palisade reload`: the running daemon's [`StatusReport`] as a human
//! summary or JSON, and a reload request.

use anyhow::{bail, Result};
use palisade_config::Config;
use palisade_core::Timestamp;
use palisade_pipeline::control::{self, unexpected, ControlError, Reply, Request};
use palisade_proto::{SourceState, StatusReport};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status of `status` and `reload` when no daemon runs.
pub const NOT_RUNNING: u8 = 3;

/// Sends `req`; `Ok(None)` when no daemon listens (a message is printed).
fn ask(cfg: &Config, req: &Request) -> Result<Option<Result<Reply, ControlError>>> {
    let socket = PathBuf::from(&cfg.general.socket);
    let r = control::call(&socket, req)?;
    if r.is_none() {
        eprintln!(
            "palisade is not running (no daemon on {})",
            socket.display()
        );
    }
    Ok(r)
}

/// `palisade status [--json]`.
pub fn status(cfg: &Config, json: bool) -> Result<ExitCode> {
    let Some(r) = ask(cfg, &Request::Status)? else {
        return Ok(ExitCode::from(NOT_RUNNING));
    };
    let report = match r? {
        Reply::Status(s) => s,
        other => return Err(unexpected(&other).into()),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(human(&report, &jiff::tz::TimeZone::system()).as_bytes())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `palisade reload`.
pub fn reload(cfg: &Config) -> Result<ExitCode> {
    let Some(r) = ask(cfg, &Request::Reload)? else {
        return Ok(ExitCode::from(NOT_RUNNING));
    };
    match r {
        Ok(Reply::Reloaded(n)) => {
            println!("configuration reloaded ({n} reload(s) since start)");
            Ok(ExitCode::SUCCESS)
        }
        Ok(other) => Err(unexpected(&other).into()),
        Err(ControlError::Refused(why)) => {
            bail!("reload refused; the daemon keeps its running configuration:\n{why}")
        }
        Err(e) => Err(e.into()),
    }
}

/// A time in `tz`, with the zone (`2025-03-01 12:00:00 UTC`).
fn when(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    t.to_jiff()
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The human summary of a status report; times in `tz`.
pub fn human(s: &StatusReport, tz: &jiff::tz::TimeZone) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let c = &s.counters;
    let _ = writeln!(
        o,
        "palisade {} is running, up {} (since {})",
        s.version,
        duration(s.uptime_secs),
        when(s.started, tz)
    );
    let _ = writeln!(o, "  config        {}", s.config);
    let _ = writeln!(o, "  log time zone {}", s.time_zone);
    let _ = writeln!(
        o,
        "  reading       {:.1} lines/s, {} lines, {} events; lag: {} batch(es) queued{}",
        s.lines_per_sec,
        c.lines,
        c.events,
        s.lag.queued_batches,
        s.lag
            .last_event_delay_secs
            .map_or(String::new(), |d| format!(
                ", last event {d:.1} s behind its log"
            ))
    );
    let _ = writeln!(
        o,
        "  bans in force {} ({} decided since start)",
        s.active_bans, c.decisions
    );
    match &s.last_ban {
        Some(d) => {
            let _ = writeln!(
                o,
                "  last ban      {} in {} at {} ({})",
                d.target,
                d.jail,
                when(d.created, tz),
                d.reason
            );
        }
        None => {
            let _ = writeln!(o, "  last ban      none since start");
        }
    }
    let _ = writeln!(
        o,
        "  reloads       {} ({} refused)",
        c.reloads, c.reload_failures
    );
    if c.header_rejects > 0 || c.ambiguous_lines > 0 {
        let _ = writeln!(
            o,
            "  skipped lines {} with an unreadable header, {} ambiguous (not blamed); \
             `palisade check` shows why",
            c.header_rejects, c.ambiguous_lines
        );
    }
    if c.responder_pending > 0 || c.responder_given_up > 0 || c.positions_held {
        let _ = writeln!(
            o,
            "  attention     {} ban(s) waiting for a responder retry, {} given up{}",
            c.responder_pending,
            c.responder_given_up,
            if c.positions_held {
                "; log positions held after a store failure (restart to resume)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(o, "jails");
    if s.jails.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for j in &s.jails {
        let _ = writeln!(
            o,
            "  {:<20} failures {:<8} bans {:<6} tracked {}",
            j.name, j.failures, j.detections, j.tracked
        );
    }
    for e in &c.jail_errors {
        let _ = writeln!(o, "  skipped: {e}");
    }
    let _ = writeln!(o, "sources");
    if s.sources.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for src in &s.sources {
        let _ = write!(
            o,
            "  {:<10} {}  {} lines",
            src.state.as_str(),
            src.path,
            src.lines
        );
        if let Some(t) = src.last_line {
            let _ = write!(o, ", last at {}", when(t, tz));
        }
        if let Some(e) = &src.error {
            let _ = write!(o, " ({e})");
        }
        if src.state == SourceState::Missing {
            let _ = write!(o, " (waiting for the file)");
        }
        let _ = writeln!(o);
    }
    let st = &s.store;
    let _ = writeln!(
        o,
        "store           {} {}{}",
        st.kind,
        if st.ok { "ok" } else { "FAILING" },
        match (&st.last_error, st.failures) {
            (Some(e), n) => format!(" ({n} failure(s); last: {e})"),
            (None, _) => String::new(),
        }
    );
    let _ = writeln!(o, "responders");
    if s.responders.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for r in &s.responders {
        let _ = writeln!(
            o,
            "  {:<20} {}{}",
            r.name,
            if r.ok { "ok" } else { "FAILING" },
            match &r.last_error {
                Some(e) => format!(" ({} failure(s); last: {e})", r.failures),
                None => String::new(),
            }
        );
    }
    o
}
