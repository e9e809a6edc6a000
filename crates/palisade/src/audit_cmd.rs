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

fn run_from_config(a: RunArgs) -> Result<ExitCode> {
    let cfg = palisade_config::Config::load(&a.config, palisade_filter::builtin_names())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let acfg = match &cfg.audit {
        Some(v) => AuditConfig::from_value(v.clone()).map_err(|e| anyhow::anyhow!(e))?,
        None => AuditConfig::default(),
    };
    let interval = match (&acfg.interval, a.once) {
        (_, true) => None,
        (Some(i), false) => palisade_audit::config::parse_interval(i),
        (None, false) => bail!("[audit] interval is not set: give it, or use --once"),
    };
    let url = palisade_pipeline::store_url(&cfg)?;
    loop {
        let started = jiff::Timestamp::now();
        let mut store = palisade_store::audit::open(&url)
            .with_context(|| format!("audit store {}", palisade_store::redact_url(&url)))?;
        let prev = palisade_audit::persist::load(store.as_mut())?;
        let opts = RunOptions {
            regions: regions_or_default(&a.regions, &acfg),
            profile: a.profile.clone(),
            client: ClientOptions {
                endpoint: a.endpoint.clone(),
                ..ClientOptions::default()
            },
            now: started,
        };
        let result = run(&acfg, &opts).and_then(|outcome| {
            let (next, events) = palisade_audit::state::diff(&prev, &outcome.evaluation, started);
            palisade_audit::persist::record(store.as_mut(), started, &outcome, &next, &events)?;
            Ok((outcome, events))
        });
        match result {
            Ok((outcome, events)) => {
                let mut out = std::io::stdout().lock();
                if a.json {
                    palisade_audit::output::json_lines(&events, &mut out)?;
                } else {
                    palisade_audit::output::table(&events, &mut out)?;
                }
                out.flush()?;
                report_errors(&outcome);
                if let Some(es) = &acfg.elasticsearch {
                    if let Err(e) = palisade_audit::output::elasticsearch_bulk(
                        &es.url,
                        &es.index,
                        &events,
                        5,
                        std::time::Duration::from_millis(200),
                    ) {
                        eprintln!("palisade: audit: {e}");
                    }
                }
                if let Err(e) = notify(&cfg, &events) {
                    eprintln!("palisade: audit: notification: {e:#}");
                }
            }
            Err(e) if interval.is_some() => eprintln!("palisade: audit: run failed: {e}"),
            Err(e) => return Err(e.into()),
        }
        let Some(secs) = interval else {
            return Ok(ExitCode::SUCCESS);
        };
        // Jitter of ±10 % so many hosts on the same schedule do not call AWS at once.
        let jitter = fastrand_jitter(secs / 10);
        std::thread::sleep(std::time::Duration::from_secs(
            (secs as i64 + jitter).max(1) as u64,
        ));
    }
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

fn report_errors(outcome: &palisade_audit::run::RunOutcome) -> usize {
    for e in &outcome.account_errors {
        eprintln!("palisade: audit: account skipped: {e}");
    }
    let mut errored: Vec<String> = outcome
        .evaluation
        .errored
        .iter()
        .map(|((acct, region, _rule), err)| format!("{acct} {region}: {err}"))
        .collect();
    errored.sort();
    errored.dedup();
    for e in &errored {
        eprintln!("palisade: audit: check errored (findings kept open): {e}");
    }
    errored.len() + outcome.account_errors.len()
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
