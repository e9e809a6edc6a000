//! The periodic digest (`palisade report`, `[report] daily_at`): what the store saw in a
//! period (new bans, events per jail, top addresses and countries, repeat offenders), as
//! text, HTML with inline SVG charts, or JSON, and e-mailed as a text + HTML multipart message.

use crate::mail::{hostname, Mailer};
use crate::notify::{sanitize, target_text};
use palisade_analyze::svg::{self, esc};
use palisade_config::Config;
use palisade_core::Timestamp;
use palisade_geo::GeoIp as GeoDb;
use palisade_store::{PeriodSummary, Store, StoreError};
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Problems producing or sending a digest.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Mail failed.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    /// Something is not configured.
    #[error("{0}")]
    Config(String),
}

/// A digest of one period.
#[derive(Clone, Debug, Serialize)]
pub struct Digest {
    /// Start of the period.
    pub since: Timestamp,
    /// End of the period.
    pub until: Timestamp,
    /// This host.
    pub host: String,
    /// What the store returned.
    pub summary: PeriodSummary,
    /// Events per country of the top addresses (empty without a GeoIP database).
    pub countries: Vec<(String, u64)>,
    /// New bans per UTC hour, oldest first: every hour that overlaps the period, zeros
    /// included.
    pub bans_per_hour: Vec<(Timestamp, u64)>,
}

/// Every hour overlapping `[since, until)`, with the counts of `rows` (zeros elsewhere).
fn fill_hours(
    since: Timestamp,
    until: Timestamp,
    rows: &[palisade_store::HourCount],
) -> Vec<(Timestamp, u64)> {
    const HOUR: i64 = 3600 * Timestamp::MICROS;
    let first = since.0.div_euclid(HOUR);
    let last = (until.0 - 1).div_euclid(HOUR);
    if last < first || last - first > 24 * 366 {
        return Vec::new();
    }
    let mut out: Vec<(Timestamp, u64)> = (first..=last).map(|h| (Timestamp(h * HOUR), 0)).collect();
    for r in rows {
        let i = r.hour.0.div_euclid(HOUR) - first;
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            slot.1 += r.count;
        }
    }
    out
}

/// Collects the digest of `[since, until)`, listing `top` items per table.
pub fn collect(
    store: &mut dyn Store,
    since: Timestamp,
    until: Timestamp,
    top: u32,
    geo: Option<&GeoDb>,
) -> Result<Digest, StoreError> {
    let summary = store.period_summary(since, until, top.max(1))?;
    let bans_per_hour = fill_hours(since, until, &store.ban_hours(since, until)?);
    let mut countries: Vec<(String, u64)> = Vec::new();
    if let Some(g) = geo {
        let mut m: std::collections::HashMap<String, u64> = Default::default();
        for (ip, n) in &summary.top_ips {
            if let Some(c) = g.country(*ip) {
                *m.entry(c).or_default() += n;
            }
        }
        countries = m.into_iter().collect();
        countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    Ok(Digest {
        since,
        until,
        host: hostname(),
        summary,
        countries,
        bans_per_hour,
    })
}

fn short(t: Timestamp) -> String {
    t.to_jiff().strftime("%Y-%m-%d %H:%M UTC").to_string()
}

impl Digest {
    /// Subject line.
    pub fn subject(&self) -> String {
        format!(
            "digest for {}: {} new bans, {} events",
            self.host, self.summary.decisions_total, self.summary.events
        )
    }

    /// Plain text.
    pub fn text(&self) -> String {
        let s = &self.summary;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Palisade digest for {}\nPeriod: {} to {}\n",
            self.host,
            short(self.since),
            short(self.until)
        );
        let _ = writeln!(
            o,
            "New bans: {}\nEvents: {} ({} failures)\n",
            s.decisions_total, s.events, s.failures
        );
        if self.bans_per_hour.iter().any(|b| b.1 > 0) {
            o.push_str("New bans per hour:\n");
            let max = self.bans_per_hour.iter().map(|b| b.1).max().unwrap_or(1);
            for (h, n) in self.bans_per_hour.iter().filter(|b| b.1 > 0) {
                let bar = "#".repeat(((n * 40).div_ceil(max)) as usize);
                let _ = writeln!(o, "  {}  {n:>6} {bar}", short(*h));
            }
            o.push('\n');
        }
        o.push_str("Events per jail:\n");
        for (j, n) in &s.events_per_jail {
            let _ = writeln!(o, "  {:<24} {n}", sanitize(j));
        }
        o.push_str("\nTop addresses (events):\n");
        for (ip, n) in &s.top_ips {
            let _ = writeln!(o, "  {:<40} {n}", ip.to_string());
        }
        if !self.countries.is_empty() {
            o.push_str("\nTop countries (events of the top addresses):\n");
            for (c, n) in &self.countries {
                let _ = writeln!(o, "  {c:<4} {n}");
            }
        }
        o.push_str("\nRepeat offenders (bans in period / in total):\n");
        for (t, inside, total) in &s.repeat_offenders {
            let _ = writeln!(o, "  {:<40} {inside} / {total}", t.to_string());
        }
        o.push_str("\nNew bans (newest first):\n");
        for d in &s.decisions {
            let d = &d.decision;
            let _ = writeln!(
                o,
                "  {}  {:<40} {:<12} {}",
                short(d.created),
                target_text(d),
                sanitize(&d.jail),
                sanitize(&d.reason)
            );
        }
        if s.decisions_total > s.decisions.len() as u64 {
            let _ = writeln!(
                o,
                "  ... and {} more",
                s.decisions_total - s.decisions.len() as u64
            );
        }
        o
    }

    /// A self-contained HTML page with inline SVG charts.
    pub fn html(&self) -> String {
        let s = &self.summary;
        let mut o = String::from("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Palisade digest</title><style>body{font-family:sans-serif;color:#222}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}</style></head><body>");
        let _ = write!(
            o,
            "<h1>Palisade digest for {}</h1><p>{} to {}</p><p><b>{}</b> new bans, <b>{}</b> events ({} failures).</p>",
            esc(&self.host),
            esc(&short(self.since)),
            esc(&short(self.until)),
            s.decisions_total,
            s.events,
            s.failures
        );
        let hours: Vec<(String, u64)> = self
            .bans_per_hour
            .iter()
            .map(|(h, n)| (short(*h), *n))
            .collect();
        o.push_str(&svg::hourly(
            "New bans per hour (UTC)",
            &hours,
            "bans",
            "#d62728",
        ));
        o.push_str("<br>");
        let jails: Vec<(String, u64)> = s.events_per_jail.clone();
        o.push_str(&svg::hbar("Events per jail", &jails, "#1f77b4"));
        o.push_str("<br>");
        let ips: Vec<(String, u64)> = s
            .top_ips
            .iter()
            .map(|(ip, n)| (ip.to_string(), *n))
            .collect();
        o.push_str(&svg::hbar("Top addresses by events", &ips, "#d62728"));
        if !self.countries.is_empty() {
            o.push_str("<br>");
            o.push_str(&svg::hbar("Top countries", &self.countries, "#2ca02c"));
        }
        o.push_str("<h2>Repeat offenders</h2><table><tr><th>target</th><th>bans in period</th><th>bans in total</th></tr>");
        for (t, inside, total) in &s.repeat_offenders {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{inside}</td><td>{total}</td></tr>",
                esc(&t.to_string())
            );
        }
        o.push_str("</table><h2>New bans</h2><table><tr><th>time</th><th>target</th><th>jail</th><th>origin</th><th>reason</th></tr>");
        for d in &s.decisions {
            let d = &d.decision;
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&short(d.created)),
                esc(&target_text(d)),
                esc(&d.jail),
                d.origin.as_str(),
                esc(&d.reason)
            );
        }
        o.push_str("</table></body></html>\n");
        o
    }

    /// JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// E-mails the digest (text and HTML alternatives).
    pub fn send(&self, mailer: &Mailer) -> Result<(), DigestError> {
        mailer.send(&self.subject(), &self.text(), Some(&self.html()))?;
        Ok(())
    }
}

/// Builds and e-mails the digest of the configured period ending now.
pub fn send_now(cfg: &Config) -> Result<Digest, DigestError> {
    let rep = cfg.report.clone().unwrap_or_default();
    let email = cfg
        .notify
        .as_ref()
        .and_then(|n| n.email.as_ref())
        .ok_or_else(|| {
            DigestError::Config(
                "the digest is e-mailed through [notify.email], which is not configured".into(),
            )
        })?;
    let mailer = Mailer::new(email, cfg)?;
    let geo = match palisade_analyze::geo::for_config(Some(cfg), None) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "digest without countries");
            None
        }
    };
    let pf = cfg.store.password_file.as_deref();
    let path = pf.map(|p| cfg.resolve(p));
    let mut store =
        palisade_store::open_with_password_file(&cfg.store.url, pf.zip(path.as_deref()))?;
    let until = Timestamp::from_jiff(jiff::Timestamp::now());
    let d = collect(
        store.as_mut(),
        until.minus(rep.period.0),
        until,
        rep.top as u32,
        geo.as_ref(),
    )?;
    d.send(&mailer)?;
    Ok(d)
}

/// The next instant strictly after `now` at local time `hh:mm` in `tz`.
pub fn next_run(now: jiff::Timestamp, tz: &jiff::tz::TimeZone, hh: u8, mm: u8) -> jiff::Timestamp {
    let local = now.to_zoned(tz.clone());
    let mut date = local.date();
    for _ in 0..3 {
        if let Ok(z) = date.at(hh as i8, mm as i8, 0, 0).to_zoned(tz.clone()) {
            if z.timestamp() > now {
                return z.timestamp();
            }
        }
        date = date.tomorrow().unwrap_or(date);
    }
    now + jiff::SignedDuration::from_hours(24)
}

/// Runs the daily digest schedule until `stop` is set: at `[report] daily_at` (local time of
/// `[general] timezone`) it e-mails the digest. Returns at once without `daily_at`. The
/// daemon calls this on a thread of its own.
pub fn run_daily(cfg: Config, stop: Arc<AtomicBool>) {
    let Some((hh, mm)) = cfg
        .report
        .as_ref()
        .and_then(|r| r.daily_at.as_deref())
        .and_then(palisade_config::parse_time_of_day)
    else {
        return;
    };
    let tz = cfg.time_zone().unwrap_or(jiff::tz::TimeZone::UTC);
    while !stop.load(Ordering::Relaxed) {
        let next = next_run(jiff::Timestamp::now(), &tz, hh, mm);
        tracing::debug!(at = %next, "next digest");
        while jiff::Timestamp::now() < next {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        match send_now(&cfg) {
            Ok(d) => tracing::info!(bans = d.summary.decisions_total, "digest sent"),
            Err(e) => tracing::error!(error = %e, "digest failed"),
        }
    }
}

/// Starts [`run_daily`] on a thread when `[report] daily_at` is set.
pub fn spawn_daily(cfg: &Config, stop: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<()>> {
    cfg.report.as_ref()?.daily_at.as_ref()?;
    let cfg = cfg.clone();
    std::thread::Builder::new()
        .name("palisade-digest".into())
        .spawn(move || run_daily(cfg, stop))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_run_is_later_today_or_tomorrow() {
        let tz = jiff::tz::TimeZone::UTC;
        let now: jiff::Timestamp = "2025-03-03T06:00:00Z".parse().unwrap();
        assert_eq!(next_run(now, &tz, 7, 0).to_string(), "2025-03-03T07:00:00Z");
        let now: jiff::Timestamp = "2025-03-03T07:00:00Z".parse().unwrap();
        assert_eq!(next_run(now, &tz, 7, 0).to_string(), "2025-03-04T07:00:00Z");
    }
}
