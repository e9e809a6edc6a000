//! fail2ban compatibility commands: `check --filter-file` (like `fail2ban-regex`) and
//! `import fail2ban` (jail configuration → Palisade TOML).

use anyhow::{bail, Context, Result};
use clap::Args;
use palisade_core::{Clock, SystemClock, Timestamp};
use palisade_pipeline::manual;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Parses repeated `--filter-option KEY=VALUE`.
fn parse_options(opts: &[String]) -> Result<Vec<(String, String)>> {
    opts.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--filter-option {kv:?}: expected KEY=VALUE"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `palisade check LOG --filter-file F [--filter-option K=V]... [--json]`: runs
/// [`palisade_pipeline::offline::check_filter_file`] and prints its results.
pub fn check(
    log: &str,
    filter_file: &Path,
    options: &[String],
    json: bool,
    now: Timestamp,
    max_line: usize,
) -> Result<ExitCode> {
    let init = parse_options(options)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_err: Option<std::io::Error> = None;
    let mut on_match = |o: serde_json::Map<String, serde_json::Value>| {
        if write_err.is_some() {
            return;
        }
        let w = serde_json::to_writer(&mut out, &o).map_err(std::io::Error::from);
        if let Err(e) = w.and_then(|_| out.write_all(b"\n")) {
            write_err = Some(e);
        }
    };
    let rep = palisade_pipeline::offline::check_filter_file(
        &palisade_pipeline::offline::spec_for(log),
        filter_file,
        init,
        now,
        max_line,
        json.then_some(&mut on_match as &mut dyn FnMut(_)),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    drop(out);
    let mut s = format!(
        "Filter: {} ({} failregex, loaded in {:.0} ms)\n",
        rep.filter.display(),
        rep.hits.len(),
        rep.load_secs * 1e3
    );
    s.push_str(&format!(
        "Lines: {} read, {} matched ({} failures), {} no-failure only, {} ignored (ignoreregex), {} missed, {} cut (over {max_line} bytes)\nRules:\n",
        rep.lines, rep.matched, rep.failures, rep.nofail_lines, rep.ignored, rep.missed, rep.cut_lines
    ));
    for (i, n) in rep.hits.iter().enumerate() {
        s.push_str(&format!("  {:<28} {n}\n", format!("failregex[{i}]")));
    }
    s.push_str(&format!(
        "Time: {:.3} s ({:.0} lines/s)\n",
        rep.seconds,
        rep.lines as f64 / rep.seconds.max(1e-9)
    ));
    if json {
        eprint!("{s}");
    } else {
        std::io::stdout().lock().write_all(s.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `palisade import fail2ban [DIR] [--output FILE]`: writes the Palisade equivalent of the
/// enabled fail2ban jails; settings without an equivalent are listed in comments at the top
/// of the output (and counted on standard error).
pub fn import(dir: &Path, output: Option<&Path>) -> Result<ExitCode> {
    let imp = palisade_fail2ban::import::import(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    match output {
        Some(p) => {
            std::fs::write(p, &imp.toml).with_context(|| format!("writing {}", p.display()))?
        }
        None => print!("{}", imp.toml),
    }
    eprintln!(
        "imported {} jail(s) ({}); {} setting(s) could not be mapped (listed at the top{})",
        imp.jails.len(),
        imp.jails.join(", "),
        imp.unmapped.len(),
        output.map_or(String::new(), |p| format!(" of {}", p.display()))
    );
    Ok(ExitCode::SUCCESS)
}

/// fail2ban's enabled jails as a Palisade configuration (for `palisade run --fail2ban`).
pub fn imported_config(dir: &Path) -> Result<palisade_config::Config> {
    let imp = palisade_fail2ban::import::import(dir)
        .map_err(|e| anyhow::anyhow!("fail2ban configuration {}: {e}", dir.display()))?;
    for u in &imp.unmapped {
        tracing::warn!(setting = %u, "fail2ban setting not mapped");
    }
    let virt = dir.join("jail.conf");
    let imported =
        palisade_config::Config::parse(&imp.toml, &virt, palisade_filter::builtin_names())
            .map_err(|e| anyhow::anyhow!("fail2ban jails of {}: {e}", dir.display()))?;
    tracing::info!(jails = ?imp.jails, "fail2ban jails imported");
    Ok(imported)
}

/// `palisade record` (fail2ban `actionban`).
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// The banned address (fail2ban `<ip>`).
    #[arg(allow_hyphen_values = true)]
    pub ip: String,
    /// `tcp`, `udp`, `icmp` or `all` (fail2ban `<protocol>`).
    #[arg(allow_hyphen_values = true)]
    pub protocol: String,
    /// Port(s): `22`, `80,443`, `0:65535`, `ssh` (fail2ban `<port>`).
    #[arg(allow_hyphen_values = true)]
    pub port: String,
    /// Failures counted by fail2ban (`<failures>`).
    #[arg(allow_hyphen_values = true)]
    pub failures: String,
    /// Ban time as Unix seconds (fail2ban `<time>`).
    #[arg(allow_hyphen_values = true)]
    pub time: String,
    /// fail2ban jail name (`<name>`).
    #[arg(long)]
    pub jail: Option<String>,
    /// Ban length in seconds, -1 = permanent (fail2ban `<bantime>`); default [defaults] ban_time.
    #[arg(long, allow_hyphen_values = true)]
    pub bantime: Option<String>,
    /// Configuration file (store, control socket, responders).
    #[arg(long, short, default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Runs `palisade record`.
pub fn record(a: RecordArgs) -> Result<ExitCode> {
    let now = SystemClock.now();
    // Validate the arguments before anything else, so a bad call fails the same with or
    // without a readable configuration.
    let pre = palisade_fail2ban::record::Record::parse(
        &a.ip,
        &a.protocol,
        &a.port,
        &a.failures,
        &a.time,
        a.jail.as_deref(),
        a.bantime.as_deref(),
        None,
        now,
    );
    if let Err(e) = &pre {
        eprintln!("palisade record: {e}");
        return Ok(ExitCode::from(64));
    }
    let cfg = super::load_config(&a.config)?;
    let mut rec = pre.expect("checked above");
    if a.bantime.is_none() {
        rec.bantime = cfg.defaults.ban_time.0;
        if let Err(e) = rec.check_not_over(now) {
            eprintln!("palisade record: {e}");
            return Ok(ExitCode::from(64));
        }
    }
    let d = rec.decision(cfg.general.dry_run);
    // fail2ban enforces its own bans: without a daemon the decision is only recorded (the
    // daemon enforces it when it starts).
    let banned = manual::ban_or_record(&cfg, vec![d], manual::Enforce::AtNextStart)?;
    if let Some((_, why)) = banned.refused.first() {
        bail!("{why}");
    }
    match (banned.via, banned.done.first()) {
        (manual::Via::Daemon, _) => println!("recorded {} (daemon)", rec.ip),
        (manual::Via::Store, Some(d)) => println!(
            "recorded {} as decision {} (the daemon is not running)",
            rec.ip, d.id
        ),
        (manual::Via::Store, None) => bail!("{}: nothing recorded", rec.ip),
    }
    Ok(ExitCode::SUCCESS)
}
