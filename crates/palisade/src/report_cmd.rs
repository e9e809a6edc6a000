//! Command-line glue for `palisade analyze`, `palisade record` and `palisade report`; the work
//! is done in the `palisade-analyze` and `palisade-notify` crates.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use palisade_analyze::analyze::{self, Analyzer, Levels};
use palisade_analyze::render::{self, ScriptKind};
use palisade_core::{Allowlist, Clock, Decision, SystemClock, Timestamp};
use palisade_pipeline::manual;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Output formats of `analyze`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON document.
    Json,
    /// One row per address.
    Csv,
    /// A self-contained HTML page with charts.
    Html,
}

/// Firewall script flavours.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Emit {
    /// iptables / ip6tables commands.
    Iptables,
    /// An nft -f file.
    Nft,
    /// ipset sets plus one iptables rule per family.
    Ipset,
    /// One address a line (`#` comments): the reviewed list `palisade fleet block` reads.
    List,
}

impl Emit {
    /// The renderer's kind.
    pub fn kind(self) -> ScriptKind {
        match self {
            Emit::Iptables => ScriptKind::Iptables,
            Emit::Nft => ScriptKind::Nft,
            Emit::Ipset => ScriptKind::Ipset,
            Emit::List => ScriptKind::List,
        }
    }
}

/// `palisade analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// nginx/apache access logs (plain or gzip-compressed), `-` for standard input. With
    /// --agents: optional, narrows each agent's allowed logs to these paths.
    #[arg(required_unless_present = "agents")]
    pub logs: Vec<String>,
    /// Ask these fleet agents (comma-separated names) to analyze their own access logs,
    /// through the running fleet server of --config; rows get a `host` column.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["apply", "flagged_lines", "geoip", "threads", "max_ips"])]
    pub agents: Option<Vec<String>>,
    /// With --agents: how long to wait for each agent (default 10m, at most 1h).
    #[arg(long, requires = "agents")]
    pub timeout: Option<String>,
    /// Only the last period (`10d`, `12h`), ending now.
    #[arg(long, conflicts_with_all = ["since", "until"])]
    pub last: Option<String>,
    /// Only lines at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines before this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    pub until: Option<String>,
    /// Suspicious hits from which an address is proposed for blocking.
    #[arg(long)]
    pub threshold: Option<u64>,
    /// Threat level thresholds: yellow,red,critical.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub levels: Option<Vec<u64>>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Threads that parse and classify lines (default: one per CPU, at most 8; 1 = none
    /// besides the reading thread). The result does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Addresses listed (0 = every address with a suspicious hit).
    #[arg(long, default_value_t = 50)]
    pub top: usize,
    /// Write a firewall script blocking the proposed addresses (to --emit-to, else standard
    /// output; the report then goes to standard error unless --output is given).
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// File for the --emit script.
    #[arg(long)]
    pub emit_to: Option<PathBuf>,
    /// Ban the proposed addresses through the configured responders (asks first).
    #[arg(long)]
    pub apply: bool,
    /// Do not ask before --apply.
    #[arg(long, requires = "apply")]
    pub yes: bool,
    /// Ban length for --apply (default: [defaults] ban_time).
    #[arg(long)]
    pub ban_time: Option<String>,
    /// Configuration (allowlist, store, responders, [report]).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// GeoIP country database (.mmdb).
    #[arg(long)]
    pub geoip: Option<PathBuf>,
    /// Write `line_no<TAB>ip<TAB>rule` for every suspicious line (for scoring).
    #[arg(long)]
    pub flagged_lines: Option<PathBuf>,
    /// Addresses tracked one by one before benign newcomers are aggregated.
    #[arg(long, default_value_t = 500_000)]
    pub max_ips: usize,
}

/// Threshold and levels: the options, else the configuration's `[report]`.
pub fn threshold_levels(
    a: &AnalyzeArgs,
    cfg: Option<&palisade_config::Config>,
) -> Result<(u64, Levels)> {
    let rep = cfg.and_then(|c| c.report.clone()).unwrap_or_default();
    let lv = a.levels.clone().unwrap_or(rep.levels.to_vec());
    if lv.len() != 3 || !(lv[0] <= lv[1] && lv[1] <= lv[2]) {
        bail!("--levels: give three increasing numbers, e.g. 100,500,1000");
    }
    Ok((
        a.threshold.unwrap_or(rep.threshold),
        Levels {
            yellow: lv[0],
            red: lv[1],
            critical: lv[2],
        },
    ))
}

/// The window of --last / --since / --until.
pub fn window(a: &AnalyzeArgs, now: Timestamp) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
    let mut since = None;
    if let Some(l) = &a.last {
        let d = palisade_config::parse_duration(l).map_err(anyhow::Error::msg)?;
        since = Some(now.minus(d));
    }
    if let Some(s) = &a.since {
        since = Some(parse_when(s)?);
    }
    Ok((since, a.until.as_deref().map(parse_when).transpose()?))
}

fn parse_when(s: &str) -> Result<Timestamp> {
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        let z = d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| anyhow::anyhow!("{s:?}: {e}"))?;
        return Ok(Timestamp::from_jiff(z.timestamp()));
    }
    bail!("{s:?}: expected RFC 3339 (2025-03-03T10:00:00Z) or a date (2025-03-03)")
}

fn progress(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || total == 0 {
        return None;
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .ok()?,
    );
    Some(pb)
}

/// Runs `palisade analyze`.
pub fn analyze(a: AnalyzeArgs) -> Result<ExitCode> {
    if let Some(agents) = &a.agents {
        return super::remote_analyze_cmd::run(&a, agents);
    }
    let cfg = a.config.as_deref().map(super::load_config).transpose()?;
    let now = SystemClock.now();
    let (threshold, levels) = threshold_levels(&a, cfg.as_ref())?;
    let mut opts = analyze::Options {
        threshold,
        levels,
        max_ips: a.max_ips.max(1),
        record_lines: a.flagged_lines.is_some(),
        threads: a.threads.unwrap_or_else(analyze::default_threads).max(1),
        ..Default::default()
    };
    if let Some(c) = &cfg {
        let mut nets: Vec<ipnet::IpNet> = c.allowlist.parsed.clone();
        nets.extend(analyze::default_allowlist().entries().iter().copied());
        opts.allowlist = Allowlist::new(nets);
        opts.tz = palisade_pipeline::time_zone(c)?;
    }
    (opts.since, opts.until) = window(&a, now)?;
    let geo = palisade_analyze::geo::for_config(cfg.as_ref(), a.geoip.as_deref())?;

    let sizes: Vec<u64> = a
        .logs
        .iter()
        .map(|l| std::fs::metadata(l).map(|m| m.len()).unwrap_or(0))
        .collect();
    let pb = progress(sizes.iter().sum());
    let mut an = Analyzer::new(opts);
    let mut done = 0u64;
    for (log, size) in a.logs.iter().zip(&sizes) {
        if let Some(pb) = &pb {
            pb.set_message(log.clone());
        }
        let mut tick = |n: u64| {
            if let Some(pb) = &pb {
                pb.set_position(done + n);
            }
        };
        if log == "-" {
            an.feed_reader("-", std::io::stdin().lock(), &mut tick)
                .context("reading standard input")?;
        } else {
            an.feed_file(Path::new(log), &mut tick)?;
        }
        done += size;
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let result = an.finish(geo.as_ref());

    if let Some(p) = &a.flagged_lines {
        let f = std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
        let mut w = std::io::BufWriter::new(f);
        for fl in &result.flagged {
            writeln!(w, "{}\t{}\t{}", fl.line, fl.ip, fl.rule)?;
        }
        w.flush()?;
    }

    let proposed: Vec<std::net::IpAddr> = result.proposed().map(|r| r.ip).collect();
    // The report goes to --output, else standard output, unless a script takes standard output.
    let script_to_stdout = a.emit.is_some() && a.emit_to.is_none();
    {
        let mut out: Box<dyn Write> = match &a.output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None if script_to_stdout => Box::new(std::io::stderr().lock()),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        match a.format {
            Format::Table => render::table(&result, a.top, &mut out)?,
            Format::Json => render::json(&result, a.top, &mut out)?,
            Format::Csv => render::csv(&result, a.top, &mut out)?,
            Format::Html => render::html(&result, a.top, &mut out)?,
        }
        out.flush()?;
    }
    if let Some(kind) = a.emit {
        let kind = kind.kind();
        let how = std::env::args().collect::<Vec<_>>().join(" ");
        let mut out: Box<dyn Write> = match &a.emit_to {
            Some(p) => Box::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Box::new(std::io::stdout().lock()),
        };
        render::script(kind, &proposed, &how, now, &mut out)?;
        out.flush()?;
    }
    if a.apply {
        apply(&a, cfg.as_ref(), &result, now)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("--apply asks for confirmation on a terminal; add --yes to apply without asking");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn apply(
    a: &AnalyzeArgs,
    cfg: Option<&palisade_config::Config>,
    result: &analyze::Analysis,
    now: Timestamp,
) -> Result<()> {
    let Some(cfg) = cfg else {
        bail!("--apply needs --config (store, responders and control socket)");
    };
    let list: Vec<&analyze::IpReport> = result.proposed().collect();
    if list.is_empty() {
        eprintln!("nothing to ban");
        return Ok(());
    }
    if !a.yes && !confirm(&format!("Ban {} address(es)?", list.len()))? {
        eprintln!("nothing banned");
        return Ok(());
    }
    let dur = match &a.ban_time {
        Some(s) => Some(palisade_config::parse_duration(s).map_err(anyhow::Error::msg)?),
        None => cfg.defaults.ban_time.0,
    };
    let decisions: Vec<Decision> = list
        .iter()
        .map(|r| {
            let mut d = palisade_pipeline::daemon::manual_decision(
                palisade_core::target_of(r.ip),
                dur,
                &format!("palisade analyze: {} suspicious requests", r.suspicious),
                now,
            );
            // Without a daemon: jail `analyze` (so the [defaults] responders), simulated
            // under dry_run. The daemon names them `manual`, as its other manual bans.
            d.jail = "analyze".into();
            d.simulated = cfg.general.dry_run;
            d
        })
        .collect();
    let banned = manual::ban_or_record(cfg, decisions, manual::Enforce::Now)?;
    for (t, why) in &banned.refused {
        eprintln!("{}: {why}", t.addr());
    }
    match banned.via {
        manual::Via::Daemon => eprintln!("banned {} address(es) (daemon)", banned.done.len()),
        manual::Via::Store => eprintln!(
            "banned {} address(es) (recorded; the daemon is not running)",
            banned.done.len()
        ),
    }
    Ok(())
}

/// `palisade report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Period covered, ending now (`1d`, `7d`); default [report] period.
    #[arg(long)]
    pub period: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Send it by e-mail through [notify.email] instead of printing it.
    #[arg(long)]
    pub email: bool,
    /// Configuration file (store, [report], [notify.email]).
    #[arg(long, short, default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Digest formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    /// Plain text.
    Text,
    /// An HTML page with a chart.
    Html,
    /// JSON.
    Json,
}

/// Runs `palisade report`.
pub fn report(a: ReportArgs) -> Result<ExitCode> {
    use palisade_notify::digest;
    let cfg = super::load_config(&a.config)?;
    let rep = cfg.report.clone().unwrap_or_default();
    let period = match &a.period {
        Some(p) => palisade_config::parse_duration(p).map_err(anyhow::Error::msg)?,
        None => rep.period.0,
    };
    let geo = palisade_analyze::geo::for_config(Some(&cfg), None)?;
    let mut store = palisade_pipeline::open_store(&cfg)?;
    let until = SystemClock.now();
    let d = digest::collect(
        store.as_mut(),
        until.minus(period),
        until,
        u32::try_from(rep.top).unwrap_or(u32::MAX),
        geo.as_ref(),
    )?;
    if a.email {
        let email = cfg
            .notify
            .as_ref()
            .and_then(|n| n.email.as_ref())
            .context("--email needs [notify.email] in the configuration")?;
        let mailer = palisade_notify::mail::Mailer::new(email, &cfg)?;
        d.send(&mailer)?;
        eprintln!("digest e-mailed to {}", email.to.join(", "));
        return Ok(ExitCode::SUCCESS);
    }
    let body = match a.format {
        ReportFormat::Text => d.text(),
        ReportFormat::Html => d.html(),
        ReportFormat::Json => serde_json::to_string_pretty(&d.json())? + "\n",
    };
    match &a.output {
        Some(p) => std::fs::write(p, body).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().write_all(body.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
