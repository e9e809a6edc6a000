//! `palisade audit`: AWS security checks that alert once per change.

use anyhow::{bail, Context, Result};
use palisade_audit::client::ClientOptions;
use palisade_audit::run::{run, RunOptions};
use palisade_audit::state::State;
use palisade_audit::AuditConfig;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `palisade audit …`.
#[derive(clap::Subcommand)]
pub enum AuditCmd {
    /// Audit AWS accounts now; print the new, changed and resolved findings.
    Aws(AwsArgs),
    /// Audit with the configuration's [audit], store and [notify] (state in the store);
    /// every [audit] interval (with jitter), or once with --once (for cron).
    Run(RunArgs),
}

/// `palisade audit run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(long, short, default_value = "/etc/palisade/palisade.toml")]
    config: PathBuf,
    /// One run, then exit.
    #[arg(long)]
    once: bool,
    /// One JSON object per event on standard output (default: a table).
    #[arg(long)]
    json: bool,
    /// One endpoint for every AWS service (tests).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Region (repeatable; default: [audit] regions, else us-east-1).
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Credentials profile.
    #[arg(long)]
    profile: Option<String>,
}

/// `palisade audit aws`.
#[derive(clap::Args)]
pub struct AwsArgs {
    /// One endpoint for every AWS service (tests: a moto server).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Region to audit (repeatable; default: [audit] regions, else us-east-1).
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// State file remembering open findings between runs (created when missing).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// One JSON object per event on standard output.
    #[arg(long)]
    json: bool,
    /// Configuration file whose [audit] table tunes the rules.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Credentials profile of ~/.aws/credentials (default: environment, then AWS_PROFILE).
    #[arg(long)]
    profile: Option<String>,
    /// Exit 1 when a check errored (the default is 0 whenever the run completed).
    #[arg(long)]
    strict: bool,
    /// "Now" for key ages (RFC 3339; default: the clock).
    #[arg(long)]
    now: Option<String>,
    /// Print API calls per region and operation on standard error.
    #[arg(long)]
    stats: bool,
}

/// `palisade config check`: the `[audit]` table, when there is one, must be valid.
pub fn check_config(cfg: &palisade_config::Config) -> Result<()> {
    if let Some(a) = &cfg.audit {
        AuditConfig::from_value(a.clone()).map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

/// Runs `palisade audit`.
pub fn run_cmd(cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Aws(a) => aws(a),
        AuditCmd::Run(a) => run_from_config(a),
    }
}

fn regions_or_default(given: &[String], cfg: &AuditConfig) -> Vec<String> {
    let mut regions = given.to_vec();
    if regions.is_empty() {
        regions = cfg.regions.clone();
    }
    if regions.is_empty() {
        regions.push(
            std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| "us-east-1".into()),
        );
    }
    regions
}

/// Command-line settings that replace `[audit]`'s.
#[derive(Clone, Debug, Default)]
struct Overrides {
    endpoint: Option<String>,
    regions: Vec<String>,
    profile: Option<String>,
}

/// What one run against the store did.
struct Done {
    events: Vec<palisade_audit::state::Event>,
    /// Checks that errored and accounts skipped, one line each.
    errors: Vec<String>,
}

/// One audit run with the configuration's store, `[audit]` and `[notify]`: the open findings
/// of the store in, the run recorded (a run that fails as a whole is recorded too, as a run
/// without accounts, and the open findings stay as they were), then Elasticsearch and the
/// notifications. `warn` reports output failures, which do not fail the run.
fn one_run(
    cfg: &palisade_config::Config,
    acfg: &AuditConfig,
    ov: &Overrides,
    warn: &dyn Fn(String),
) -> Result<Done> {
    let started = jiff::Timestamp::now();
    let url = palisade_pipeline::store_url(cfg)?;
    let mut store = palisade_store::audit::open(&url)
        .with_context(|| format!("audit store {}", palisade_store::redact_url(&url)))?;
    let prev = palisade_audit::persist::load(store.as_mut())?;
    let opts = RunOptions {
        regions: regions_or_default(&ov.regions, acfg),
        profile: ov.profile.clone(),
        client: ClientOptions {
            endpoint: ov.endpoint.clone().or_else(|| acfg.endpoint.clone()),
            ..ClientOptions::default()
        },
        now: started,
    };
    let outcome = match run(acfg, &opts) {
        Ok(o) => o,
        Err(e) => {
            if let Err(e2) = palisade_audit::persist::record_failed(
                store.as_mut(),
                started,
                &prev,
                &e.to_string(),
            ) {
                warn(format!("the failed run could not be recorded: {e2}"));
            }
            return Err(e.into());
        }
    };
    let (next, events) = palisade_audit::state::diff(&prev, &outcome.evaluation, started);
    palisade_audit::persist::record(store.as_mut(), started, &outcome, &next, &events)?;
    if let Some(es) = &acfg.elasticsearch {
        if let Err(e) = palisade_audit::output::elasticsearch_bulk(
            &es.url,
            &es.index,
            &events,
            5,
            std::time::Duration::from_millis(200),
        ) {
            warn(format!("{e}"));
        }
    }
    if let Err(e) = notify(cfg, &events) {
        warn(format!("notification: {e:#}"));
    }
    Ok(Done {
        events,
        errors: error_lines(&outcome),
    })
}

fn run_from_config(a: RunArgs) -> Result<ExitCode> {
    let cfg = palisade_config::Config::load(&a.config, palisade_filter::builtin_names())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let acfg = audit_config(&cfg)?;
    let interval = match (&acfg.interval, a.once) {
        (_, true) => None,
        (Some(i), false) => palisade_audit::config::parse_interval(i),
        (None, false) => bail!("[audit] interval is not set: give it, or use --once"),
    };
    let ov = Overrides {
        endpoint: a.endpoint.clone(),
        regions: a.regions.clone(),
        profile: a.profile.clone(),
    };
    let warn = |m: String| eprintln!("palisade: audit: {m}");
    loop {
        match one_run(&cfg, &acfg, &ov, &warn) {
            Ok(done) => {
                let mut out = std::io::stdout().lock();
                if a.json {
                    palisade_audit::output::json_lines(&done.events, &mut out)?;
                } else {
                    palisade_audit::output::table(&done.events, &mut out)?;
                }
                out.flush()?;
                for e in &done.errors {
                    eprintln!("palisade: audit: {e}");
                }
            }
            Err(e) if interval.is_some() => eprintln!("palisade: audit: run failed: {e:#}"),
            Err(e) => return Err(e),
        }
        let Some(secs) = interval else {
            return Ok(ExitCode::SUCCESS);
        };
        std::thread::sleep(jittered(secs));
    }
}

/// `[audit]` of a loaded configuration (defaults when absent).
fn audit_config(cfg: &palisade_config::Config) -> Result<AuditConfig> {
    match &cfg.audit {
        Some(v) => AuditConfig::from_value(v.clone()).map_err(|e| anyhow::anyhow!(e)),
        None => Ok(AuditConfig::default()),
    }
}

/// `secs` ± 10 %, so that many hosts on the same schedule do not call AWS at once.
fn jittered(secs: u64) -> std::time::Duration {
    let jitter = fastrand_jitter(secs / 10);
    std::time::Duration::from_secs((secs as i64 + jitter).max(1) as u64)
}

/// A pseudo-random offset in `-span..=span` seconds (from the clock's nanoseconds; no
/// cryptographic need).
fn fastrand_jitter(span: u64) -> i64 {
    if span == 0 {
        return 0;
    }
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (n % (2 * span + 1)) as i64 - span as i64
}

/// Checks that errored (their findings kept open) and accounts skipped, one line each.
fn error_lines(outcome: &palisade_audit::run::RunOutcome) -> Vec<String> {
    let mut lines: Vec<String> = outcome
        .account_errors
        .iter()
        .map(|e| format!("account skipped: {e}"))
        .collect();
    let mut errored: Vec<String> = outcome
        .evaluation
        .errored
        .iter()
        .map(|((acct, region, _rule), err)| {
            format!("check errored (findings kept open): {acct} {region}: {err}")
        })
        .collect();
    errored.sort();
    errored.dedup();
    lines.extend(errored);
    lines
}

fn report_errors(outcome: &palisade_audit::run::RunOutcome) -> usize {
    let lines = error_lines(outcome);
    for e in &lines {
        eprintln!("palisade: audit: {e}");
    }
    lines.len()
}

/// One message per run (not per finding) through the [notify] e-mail and web hook.
fn notify(cfg: &palisade_config::Config, events: &[palisade_audit::state::Event]) -> Result<()> {
    let Some(n) = &cfg.notify else {
        return Ok(());
    };
    if events.is_empty() {
        return Ok(());
    }
    let count = |k: &str| events.iter().filter(|e| e.event.as_str() == k).count();
    let subject = format!(
        "[palisade] cloud audit: {} new, {} changed, {} resolved",
        count("new"),
        count("changed"),
        count("resolved")
    );
    let mut text = Vec::new();
    palisade_audit::output::table(events, &mut text)?;
    let text = String::from_utf8_lossy(&text).into_owned();
    if let Some(e) = &n.email {
        #[cfg(feature = "notify")]
        palisade_notify::mail::Mailer::new(e, cfg)?.send(&subject, &text, None)?;
        #[cfg(not(feature = "notify"))]
        {
            let _ = e;
            eprintln!("palisade: audit: [notify.email] needs the `notify` feature; not sent");
        }
    }
    if let Some(w) = &n.webhook {
        let body = match w.format.as_str() {
            "slack" => serde_json::json!({ "text": format!("{subject}\n{text}") }),
            "discord" => serde_json::json!({
                "content": format!("{subject}\n{text}").replace('@', "@\u{200b}").chars().take(1990).collect::<String>(),
                "allowed_mentions": { "parse": [] }
            }),
            _ => serde_json::json!({ "kind": "audit", "subject": subject, "events": events }),
        };
        palisade_audit::output::webhook(&w.url.0, &body, w.timeout.0)?;
    }
    Ok(())
}

fn aws(a: AwsArgs) -> Result<ExitCode> {
    let cfg = match &a.config {
        Some(p) => AuditConfig::load(p)?,
        None => AuditConfig::default(),
    };
    let regions = regions_or_default(&a.regions, &cfg);
    let now = match &a.now {
        Some(s) => s
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("--now {s:?}: expected RFC 3339"))?,
        None => jiff::Timestamp::now(),
    };
    let opts = RunOptions {
        regions,
        profile: a.profile.clone(),
        client: ClientOptions {
            endpoint: a.endpoint.clone(),
            ..ClientOptions::default()
        },
        now,
    };
    let prev = match &a.state {
        Some(p) => State::load(p)?,
        None => State::default(),
    };
    let outcome = run(&cfg, &opts)?;
    let (next, events) = palisade_audit::state::diff(&prev, &outcome.evaluation, now);
    if let Some(p) = &a.state {
        next.save(p)?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        palisade_audit::output::json_lines(&events, &mut out)?;
    } else {
        palisade_audit::output::table(&events, &mut out)?;
    }
    out.flush()?;
    if let Some(es) = &cfg.elasticsearch {
        palisade_audit::output::elasticsearch_bulk(
            &es.url,
            &es.index,
            &events,
            5,
            std::time::Duration::from_millis(200),
        )?;
    }
    let errored = report_errors(&outcome);
    if a.stats {
        for (k, n) in &outcome.calls {
            eprintln!("calls {k} {n}");
        }
    }
    if a.strict && errored > 0 {
        return Ok(ExitCode::from(1));
    }
    if a.state.is_none() && !a.json {
        eprintln!("palisade: audit: no --state: every finding is reported as new");
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// Inside `palisade run`

/// The audit inside `palisade run`: its own thread, which sleeps until the next run is due
/// and never touches detection. A run that fails is logged, recorded in the store as a failed
/// run, and counted; the next one happens on schedule all the same. A reload hands it the new
/// configuration: a changed `interval` reschedules, a removed one stops the schedule.
pub struct Scheduler {
    tx: std::sync::mpsc::Sender<Msg>,
    done: std::sync::mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Hands the audit thread the configurations the daemon accepted.
pub struct Reloader(std::sync::mpsc::Sender<Msg>);

impl Reloader {
    /// Hands over a configuration the daemon accepted.
    pub fn reload(&self, cfg: &palisade_config::Config) {
        let _ = self.0.send(Msg::Config(Box::new(cfg.clone())));
    }
}

enum Msg {
    Config(Box<palisade_config::Config>),
    Stop,
}

/// Runs ended in the daemon, for the log.
#[derive(Default)]
struct Counts {
    ok: u64,
    failed: u64,
}

impl Scheduler {
    /// Starts the thread (idle while `[audit] interval` is not set). Fails on an invalid
    /// `[audit]`.
    pub fn spawn(cfg: &palisade_config::Config) -> Result<Scheduler> {
        check_config(cfg)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                schedule_loop(cfg, rx);
                let _ = done_tx.send(());
            })
            .context("starting the audit thread")?;
        Ok(Scheduler {
            tx,
            done,
            thread: Some(thread),
        })
    }

    /// A handle that hands the thread new configurations.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.tx.clone())
    }

    /// Stops the thread; a run in progress is waited for at most `grace`, then abandoned
    /// (nothing of it is recorded: the store write is one transaction at its end).
    pub fn stop(mut self, grace: std::time::Duration) {
        let _ = self.tx.send(Msg::Stop);
        match self.done.recv_timeout(grace) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!("cloud audit still running at shutdown; abandoned");
            }
        }
    }
}

/// The interval of `[audit]`, if the daemon should audit.
fn interval_of(cfg: &palisade_config::Config) -> Option<u64> {
    let acfg = audit_config(cfg).ok()?;
    palisade_audit::config::parse_interval(acfg.interval.as_deref()?)
}

/// When the first run is due: one interval after the last run the store remembers (so a
/// restart does not audit again), or soon (within a tenth of the interval, at most a minute,
/// spread at random) when that is past or there was none.
fn first_due(cfg: &palisade_config::Config, secs: u64) -> std::time::Instant {
    let now = std::time::Instant::now();
    let soon =
        now + std::time::Duration::from_secs(fastrand_jitter(secs.min(600) / 10).unsigned_abs());
    let last = palisade_pipeline::store_url(cfg)
        .ok()
        .and_then(|url| palisade_store::audit::open(&url).ok())
        .and_then(|mut s| s.runs(1).ok())
        .and_then(|runs| runs.into_iter().next())
        .and_then(|r| r.started.parse::<jiff::Timestamp>().ok());
    let Some(last) = last else { return soon };
    let since = jiff::Timestamp::now().duration_since(last).as_secs().max(0) as u64;
    if since >= secs {
        soon
    } else {
        now + jittered(secs - since).min(std::time::Duration::from_secs(secs))
    }
}

fn schedule_loop(mut cfg: palisade_config::Config, rx: std::sync::mpsc::Receiver<Msg>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut interval = interval_of(&cfg);
    let mut next = interval.map(|s| first_due(&cfg, s));
    let mut counts = Counts::default();
    if let (Some(s), Some(t)) = (interval, next) {
        tracing::info!(
            interval_secs = s,
            first_in_secs = t
                .saturating_duration_since(std::time::Instant::now())
                .as_secs(),
            "cloud audit scheduled"
        );
    }
    loop {
        let msg = match next {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(std::time::Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Msg::Config(c)) => {
                cfg = *c;
                let new = interval_of(&cfg);
                if new != interval {
                    interval = new;
                    next = interval.map(|s| first_due(&cfg, s));
                    match interval {
                        Some(s) => tracing::info!(interval_secs = s, "cloud audit rescheduled"),
                        None => tracing::info!("cloud audit schedule removed"),
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let Some(secs) = interval else {
                    next = None;
                    continue;
                };
                daemon_run(&cfg, &mut counts);
                next = Some(std::time::Instant::now() + jittered(secs));
            }
        }
    }
}

/// One run in the daemon: everything goes to the log.
fn daemon_run(cfg: &palisade_config::Config, counts: &mut Counts) {
    let t0 = std::time::Instant::now();
    let warn = |m: String| tracing::warn!("cloud audit: {m}");
    let result =
        audit_config(cfg).and_then(|acfg| one_run(cfg, &acfg, &Overrides::default(), &warn));
    match result {
        Ok(done) => {
            counts.ok += 1;
            let count = |k: &str| done.events.iter().filter(|e| e.event.as_str() == k).count();
            for e in &done.errors {
                tracing::warn!("cloud audit: {e}");
            }
            tracing::info!(
                new = count("new"),
                changed = count("changed"),
                resolved = count("resolved"),
                errors = done.errors.len(),
                secs = format_args!("{:.1}", t0.elapsed().as_secs_f64()),
                runs = counts.ok,
                failed_runs = counts.failed,
                "cloud audit run done"
            );
        }
        Err(e) => {
            counts.failed += 1;
            tracing::error!(
                error = %format!("{e:#}"),
                runs = counts.ok,
                failed_runs = counts.failed,
                "cloud audit run failed; the next one runs on schedule"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn cfg(dir: &std::path::Path, interval: &str) -> palisade_config::Config {
        let text = format!(
            "[store]\nurl = \"sqlite:{}/p.db\"\n\n[audit]\ninterval = \"{interval}\"\n",
            dir.display()
        );
        palisade_config::Config::parse(
            &text,
            &dir.join("palisade.toml"),
            palisade_filter::builtin_names(),
        )
        .unwrap()
    }

    fn record_run_at(c: &palisade_config::Config, ago: Duration) {
        let url = palisade_pipeline::store_url(c).unwrap();
        let mut s = palisade_store::audit::open(&url).unwrap();
        let t = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
        let run = palisade_store::audit::AuditRun {
            started: t.to_string(),
            finished: t.to_string(),
            accounts: "123456789012".into(),
            errors: "[]".into(),
            ..Default::default()
        };
        s.record_run(&run, &[], &[]).unwrap();
    }

    fn due_in(c: &palisade_config::Config) -> Duration {
        let secs = interval_of(c).unwrap();
        first_due(c, secs).saturating_duration_since(Instant::now())
    }

    #[test]
    fn first_run_comes_one_interval_after_the_last_one_the_store_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), "1h");
        assert_eq!(interval_of(&c), Some(3600));
        // No run yet: soon (within a tenth of the interval, at most a minute).
        assert!(due_in(&c) <= Duration::from_secs(60), "{:?}", due_in(&c));
        // A run 10 minutes ago (a restart): the rest of the interval, ±10 %.
        record_run_at(&c, Duration::from_secs(600));
        let d = due_in(&c);
        assert!(
            d >= Duration::from_secs(2690) && d <= Duration::from_secs(3310),
            "{d:?}"
        );
        // A run longer ago than the interval: overdue, so soon.
        record_run_at(&c, Duration::from_secs(7200));
        // (The newest run is the one just recorded, whose start is two hours back.)
        assert!(due_in(&c) <= Duration::from_secs(60), "{:?}", due_in(&c));
        // Without an interval the daemon does not audit.
        let dir2 = tempfile::tempdir().unwrap();
        let text = format!("[store]\nurl = \"sqlite:{}/p.db\"\n", dir2.path().display());
        let none = palisade_config::Config::parse(
            &text,
            &dir2.path().join("palisade.toml"),
            palisade_filter::builtin_names(),
        )
        .unwrap();
        assert_eq!(interval_of(&none), None);
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        for _ in 0..200 {
            let d = jittered(3600).as_secs();
            assert!((3240..=3960).contains(&d), "{d}");
        }
        assert_eq!(jittered(5).as_secs(), 5);
    }
}
