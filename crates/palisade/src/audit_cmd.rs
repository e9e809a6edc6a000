//! `palisade audit`: AWS security checks that alert once per change.

use anyhow::{Context, Result};
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
    }
}

fn aws(a: AwsArgs) -> Result<ExitCode> {
    let cfg = match &a.config {
        Some(p) => AuditConfig::load(p)?,
        None => AuditConfig::default(),
    };
    let mut regions = a.regions.clone();
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
    if a.stats {
        for (k, n) in &outcome.calls {
            eprintln!("calls {k} {n}");
        }
    }
    if a.strict && (!errored.is_empty() || !outcome.account_errors.is_empty()) {
        return Ok(ExitCode::from(1));
    }
    if a.state.is_none() && !a.json {
        eprintln!("palisade: audit: no --state: every finding is reported as new");
    }
    Ok(ExitCode::SUCCESS)
}
