//! `palisade`: the thin binary. Command-line parsing, logging set-up and output formatting;
//! all behaviour lives in the library crates.
//!
//! Cargo features (all on by default) leave whole parts out of small builds (the agent fleet
//! mode needs): `server` (HTTP API, dashboard, `user`/`token`), `notify` (notifications,
//! digest, AbuseIPDB, `analyze`, `report`, `record`), `fail2ban` (filter files, `check
//! --filter-file`, `import fail2ban`, `run --fail2ban`), `postgres` (the PostgreSQL store).
//! `cargo build -p palisade --no-default-features` runs, checks, replays and reports status
//! on SQLite with the built-in filters.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use palisade_config::Config;
use palisade_core::{Clock, SystemClock, Timestamp};
use palisade_pipeline::daemon::{manual_decision, parse_target};
use palisade_pipeline::{manual, offline};
use palisade_pipeline::{Daemon, DaemonOptions, Supervise};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod config_cmd;
mod firewall;

#[cfg(feature = "fail2ban")]
mod f2b_cmd;

#[cfg(feature = "notify")]
mod remote_analyze_cmd;
#[cfg(feature = "notify")]
mod report_cmd;

#[cfg(feature = "server")]
mod server_cmd;

mod status_cmd;

#[cfg(feature = "audit")]
mod audit_cmd;

#[cfg(feature = "fleet")]
mod fleet_cmd;

/// mimalloc: the filters' per-line work allocates many small short-lived values (group
/// dictionaries, results) on two threads, where it is much faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = "/etc/palisade/palisade.toml";

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Fast intrusion prevention and security monitoring"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: follow logs, detect, ban, remember.
    Run {
        /// Configuration file (default: /etc/palisade/palisade.toml; optional with
        /// --fail2ban when that file does not exist).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also run the enabled jails of this fail2ban configuration folder
        /// (`/etc/fail2ban`), imported as `palisade import fail2ban` would, on every start
        /// and reload.
        #[arg(long, value_name = "DIR")]
        fail2ban: Option<PathBuf>,
        /// Read existing log content when no position is saved (default: start at the end).
        #[arg(long)]
        from_start: bool,
        /// Simulate: record decisions, enforce nothing.
        #[arg(long)]
        dry_run: bool,
        /// Read the logs to their end, then stop (batch mode).
        #[arg(long)]
        once: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Run one filter over a log and report what it matches (like fail2ban-regex).
    Check {
        /// Log file (`-` for standard input).
        log: String,
        /// Built-in filter (or --filter-file).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
            palisade_filter::builtin_names().iter().copied()
        ))]
        filter: Option<String>,
        /// Filter mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Normal)]
        mode: ModeArg,
        /// One JSON object per matched line on standard output.
        #[arg(long)]
        json: bool,
        /// "Now" for inferring years of syslog dates (RFC 3339).
        #[arg(long)]
        now: Option<String>,
        /// Longest line kept, in bytes.
        #[arg(long, default_value_t = 16384)]
        max_line: usize,
        /// A fail2ban filter file instead of a built-in filter (hosts reported verbatim).
        #[arg(long, value_name = "F")]
        filter_file: Option<PathBuf>,
        /// Filter option, repeatable: for a fail2ban filter file `mode=aggressive`,
        /// `logtype=journal`…; for `nginx_access`/`apache_access` `log_format=combined_xff`
        /// (or a format string) and `trusted_proxies=10.0.0.0/8`.
        #[arg(long, value_name = "KEY=VALUE")]
        filter_option: Vec<String>,
    },
    /// Import another tool's configuration as a Palisade configuration.
    #[cfg(feature = "fail2ban")]
    Import {
        #[command(subcommand)]
        cmd: ImportCmd,
    },
    /// Replay a log through the whole detection on event time; print the decisions.
    Replay {
        /// Log file (`-` for standard input).
        log: String,
        /// Configuration whose enabled jails are replayed (their log sources are ignored).
        #[arg(long, short)]
        config: PathBuf,
        /// One JSON object per decision on standard output.
        #[arg(long)]
        json: bool,
        /// "Now" for inferring years of syslog dates (RFC 3339).
        #[arg(long)]
        now: Option<String>,
    },
    /// List, add or delete decisions (bans).
    Decisions {
        /// Configuration file (store and control socket).
        #[arg(long, short, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        cmd: DecisionsCmd,
    },
    /// Analyse web access logs: suspicious clients, threat level, addresses to block.
    #[cfg(feature = "notify")]
    Analyze(report_cmd::AnalyzeArgs),
    /// Record a ban decided by fail2ban (for fail2ban's `actionban`).
    #[cfg(feature = "fail2ban")]
    Record(f2b_cmd::RecordArgs),
    /// Digest of a period from the store (bans, jails, top addresses), optionally e-mailed.
    #[cfg(feature = "notify")]
    Report(report_cmd::ReportArgs),
    /// Dashboard accounts (`user add NAME`, `user list`, `user delete NAME`).
    #[cfg(feature = "server")]
    User {
        /// Configuration file (store).
        #[arg(long, short, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        cmd: server_cmd::UserCmd,
    },
    /// API tokens (`token add --scope read|admin`, `token list`, `token delete ID`).
    #[cfg(feature = "server")]
    Token {
        /// Configuration file (store).
        #[arg(long, short, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        cmd: server_cmd::TokenCmd,
    },
    /// Show the running daemon's state (exit status 3 when no daemon runs).
    Status {
        /// Configuration file (control socket).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the status report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the running daemon re-read its configuration (as SIGHUP does); fails with the
    /// validation error when the new configuration is refused.
    Reload {
        /// Configuration file (control socket).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Inspect or clean up the firewall state of the nftables/ipset/ufw responders.
    Firewall {
        /// Configuration file (responders).
        #[arg(long, short, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        /// Only this responder (default: every firewall responder the configuration uses).
        #[arg(long, global = true)]
        responder: Option<String>,
        #[command(subcommand)]
        cmd: firewall::FirewallCmd,
    },
    /// Cloud audit: AWS security checks that alert once per change.
    #[cfg(feature = "audit")]
    Audit {
        #[command(subcommand)]
        cmd: audit_cmd::AuditCmd,
    },
    /// Fleet mode: enrollment tokens, joining a server, agents.
    #[cfg(feature = "fleet")]
    Fleet {
        /// Configuration file (store, state directory, [fleet]).
        #[arg(long, short, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        cmd: fleet_cmd::FleetCmd,
    },
    /// Print a shell completion script (for packaging: `palisade completions bash`).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages: palisade.1 and one page per subcommand (for packaging).
    #[command(hide = true)]
    Man {
        /// Folder to write into (created when missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[cfg(feature = "fail2ban")]
#[derive(Subcommand)]
enum ImportCmd {
    /// fail2ban jails (`jail.conf`, `jail.local`, `jail.d/`) → commented Palisade TOML.
    Fail2ban {
        /// fail2ban configuration folder.
        #[arg(default_value = "/etc/fail2ban")]
        dir: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a configuration file; print every problem with file, line and what is allowed.
    Check {
        /// The file.
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DecisionsCmd {
    /// List decisions (default: in force now).
    List {
        /// Include expired and revoked decisions.
        #[arg(long)]
        all: bool,
        /// Only decisions covering this address or network.
        #[arg(long)]
        ip: Option<String>,
        /// Only this jail.
        #[arg(long)]
        jail: Option<String>,
        /// At most this many (one page; see --offset).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// Skip this many (newest first) before the page.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
        offset: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ban an address or network.
    Add {
        /// Address or CIDR network.
        target: String,
        /// Length (`1h`, `1d`); permanent if omitted.
        #[arg(long)]
        duration: Option<String>,
        /// Reason recorded with the ban.
        #[arg(long, default_value = "manual ban")]
        reason: String,
    },
    /// Lift the bans of an address or network.
    Delete {
        /// Address or CIDR network.
        target: String,
        /// Exit 0 also when no ban covered the target (for scripts such as fail2ban's
        /// `actionunban`, where the ban may already have expired).
        #[arg(long)]
        if_exists: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Normal,
    Aggressive,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        // The reader went away (`palisade decisions list | head`): nothing more to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether an error comes from writing to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(|io| io.kind()) == pipe
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == pipe
    })
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run {
            config,
            fail2ban,
            from_start,
            dry_run,
            once,
        } => {
            let src = RunConfig::new(config, fail2ban);
            run(&src, from_start, dry_run, once)
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => config_cmd::config_check(&file),
        Cmd::Check {
            log,
            filter,
            mode,
            json,
            now,
            max_line,
            filter_file,
            filter_option,
        } => {
            readable_log(&log)?;
            match filter_file {
                #[cfg(feature = "fail2ban")]
                Some(ff) => f2b_cmd::check(
                    &log,
                    &ff,
                    &filter_option,
                    json,
                    parse_now(now.as_deref())?,
                    max_line,
                ),
                #[cfg(not(feature = "fail2ban"))]
                Some(_) => {
                    bail!("--filter-file: this build has no fail2ban support (cargo feature `fail2ban`)")
                }
                None => {
                    let Some(filter) = filter else {
                        bail!(
                            "which filter? --filter NAME (built-in: {}) or --filter-file FILE",
                            palisade_filter::builtin_names().join(", ")
                        );
                    };
                    check(
                        &log,
                        &filter,
                        mode,
                        &filter_option,
                        json,
                        now.as_deref(),
                        max_line,
                    )
                }
            }
        }
        #[cfg(feature = "fail2ban")]
        Cmd::Import {
            cmd: ImportCmd::Fail2ban { dir, output },
        } => f2b_cmd::import(&dir, output.as_deref()),
        Cmd::Replay {
            log,
            config,
            json,
            now,
        } => {
            readable_log(&log)?;
            replay(&log, &config, json, now.as_deref())
        }
        Cmd::Decisions { config, cmd } => decisions(&config, cmd),
        Cmd::Status { config, json } => status_cmd::status(&load_config(&config)?, json),
        Cmd::Reload { config } => status_cmd::reload(&load_config(&config)?),
        #[cfg(feature = "server")]
        Cmd::User { config, cmd } => server_cmd::user(&load_config(&config)?, cmd),
        #[cfg(feature = "server")]
        Cmd::Token { config, cmd } => server_cmd::token(&load_config(&config)?, cmd),
        #[cfg(feature = "notify")]
        Cmd::Analyze(a) => report_cmd::analyze(a),
        #[cfg(feature = "fail2ban")]
        Cmd::Record(a) => f2b_cmd::record(a),
        #[cfg(feature = "notify")]
        Cmd::Report(a) => report_cmd::report(a),
        Cmd::Firewall {
            config,
            responder,
            cmd,
        } => firewall::run(&config, responder.as_deref(), cmd),
        #[cfg(feature = "audit")]
        Cmd::Audit { cmd } => audit_cmd::run_cmd(cmd),
        #[cfg(feature = "fleet")]
        Cmd::Fleet { config, cmd } => fleet_cmd::run_cmd(&load_config(&config)?, cmd),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut cmd, "palisade", &mut out);
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { out } => {
            std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
            let cmd = <Cli as clap::CommandFactory>::command();
            let n = write_man(&cmd, &out, "")?;
            println!("wrote {n} man pages to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes the page of `cmd` (`palisade.1`, `palisade-decisions.1`, `palisade-decisions-list.1`…)
/// and those of its visible subcommands; returns how many were written.
fn write_man(cmd: &clap::Command, dir: &Path, prefix: &str) -> Result<usize> {
    let name = if prefix.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{prefix}-{}", cmd.get_name())
    };
    // The page's title is its file name (`PALISADE-DECISIONS`), as man(1) expects.
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("{}", path.display()))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        n += write_man(sub, dir, &name)?;
    }
    Ok(n)
}

/// A log named on the command line must be there and readable (`-` is standard input): a
/// typo is an error, not "0 lines".
fn readable_log(log: &str) -> Result<()> {
    if log == "-" {
        return Ok(());
    }
    let meta = std::fs::metadata(log).with_context(|| format!("cannot read log {log}"))?;
    if meta.is_dir() {
        bail!("cannot read log {log}: it is a directory");
    }
    // Only a regular file is opened to try it: opening a FIFO (or /dev/stdin on a pipe) would
    // take the writer's one rendezvous, and the real read would then wait forever.
    if meta.is_file() {
        std::fs::File::open(log).with_context(|| format!("cannot read log {log}"))?;
    }
    Ok(())
}

fn init_logging(level: &str) {
    // Third-party clients stay at `warn`: they log URLs and headers that carry secrets.
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(palisade_core::log_directives(&base))
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(palisade_core::log_directives(level))
        });
    // Colours only for a person at a terminal, and never with NO_COLOR (no-color.org).
    let no_color = matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn load_config(path: &Path) -> Result<Config> {
    Config::load(path, palisade_filter::builtin_names()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn parse_now(now: Option<&str>) -> Result<Timestamp> {
    match now {
        Some(s) => Timestamp::parse_rfc3339(s)
            .map_err(|e| anyhow::anyhow!("--now {s:?}: expected RFC 3339 ({e})")),
        None => Ok(SystemClock.now()),
    }
}

/// What is allowed but probably not meant (`config check` and the start of `run`).
fn config_warnings(cfg: &Config) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(s) = cfg.server.as_ref().filter(|s| s.enabled) {
        if !s.listen.ip().is_loopback() && s.tls_cert.is_none() {
            w.push(format!(
                "[server] listen = \"{}\" is reachable from other hosts without TLS \
                 (passwords and session cookies in clear): set tls_cert and tls_key, or listen \
                 on 127.0.0.1 behind a TLS proxy",
                s.listen
            ));
        }
    }
    w
}

/// Where `palisade run` takes its configuration from: a Palisade file, fail2ban's jails, or
/// both (the file's settings, plus the fail2ban jails and their responders and allowlist).
struct RunConfig {
    config: Option<PathBuf>,
    fail2ban: Option<PathBuf>,
}

impl RunConfig {
    /// `--config` and `--fail2ban` as given. Without `--config`, the default file is used
    /// when it exists or when there is no `--fail2ban`.
    fn new(config: Option<PathBuf>, fail2ban: Option<PathBuf>) -> Self {
        let config = match (config, &fail2ban) {
            (Some(c), _) => Some(c),
            (None, None) => Some(PathBuf::from(DEFAULT_CONFIG)),
            (None, Some(_)) => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()),
        };
        RunConfig { config, fail2ban }
    }

    /// For logs and status.
    fn describe(&self) -> String {
        match (&self.config, &self.fail2ban) {
            (Some(c), Some(f)) => format!("{} + fail2ban {}", c.display(), f.display()),
            (Some(c), None) => c.display().to_string(),
            (None, Some(f)) => format!("fail2ban {}", f.display()),
            (None, None) => String::new(),
        }
    }

    /// Loads (start and every reload): the file, merged with fail2ban's imported jails
    /// ([`Config::merge_imported`]).
    fn load(&self) -> Result<Config> {
        let base = self
            .config
            .as_deref()
            .map(config_cmd::load_for_run)
            .transpose()?;
        let Some(dir) = &self.fail2ban else {
            return base.context("no configuration");
        };
        #[cfg(not(feature = "fail2ban"))]
        {
            let _ = base;
            bail!(
                "--fail2ban {}: this build has no fail2ban support (cargo feature `fail2ban`)",
                dir.display()
            );
        }
        #[cfg(feature = "fail2ban")]
        {
            let imported = f2b_cmd::imported_config(dir)?;
            let Some(mut cfg) = base else {
                return Ok(imported);
            };
            cfg.merge_imported(imported)?;
            Ok(cfg)
        }
    }
}

fn run(src: &RunConfig, from_start: bool, dry_run: bool, once: bool) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let mut cfg = src.load()?;
    let config = src.describe();
    if dry_run {
        cfg.general.dry_run = true;
    }
    init_logging(&cfg.general.log_level);
    for w in config_warnings(&cfg) {
        tracing::warn!("{w}");
    }
    tracing::debug!(
        ms = format_args!("{:.1}", t0.elapsed().as_secs_f64() * 1e3),
        "configuration loaded"
    );
    // Watchers of the daemon: the dashboard's live feed, notifications, AbuseIPDB.
    #[allow(unused_mut)]
    let mut observers: Vec<Arc<dyn palisade_pipeline::Observer>> = Vec::new();
    #[cfg(feature = "server")]
    let feed = palisade_server::FeedHub::new();
    #[cfg(feature = "server")]
    observers.extend(server_cmd::observer(&cfg, &feed));
    #[cfg(feature = "notify")]
    observers.extend(
        palisade_notify::build_observers(&cfg).context("start-up failed; nothing was started")?,
    );
    #[cfg(feature = "fleet")]
    let fleet_prepared = {
        let (obs, prepared) = fleet_cmd::prepare(&cfg);
        observers.extend(obs);
        prepared
    };
    let opts = DaemonOptions {
        from_start,
        follow: !once,
        clock: Arc::new(SystemClock),
        observer: palisade_pipeline::Fanout::combine(observers),
        config_name: config.clone(),
    };
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    tracing::debug!(
        ms = format_args!("{:.1}", t0.elapsed().as_secs_f64() * 1e3),
        "observers built; starting the daemon"
    );
    let mut daemon =
        Daemon::start(cfg.clone(), opts).context("start-up failed; nothing was started")?;
    #[cfg(feature = "server")]
    let server = match server_cmd::start_server(&cfg, &daemon, feed) {
        Ok(s) => s,
        Err(e) => {
            daemon.shutdown();
            return Err(e.context("start-up failed; nothing was started"));
        }
    };
    #[cfg(feature = "server")]
    if let Some(s) = &server {
        tracing::info!(url = %s.url(), "dashboard and API listening");
    }
    #[cfg(feature = "fleet")]
    let fleet = match fleet_cmd::start(&cfg, &daemon, fleet_prepared) {
        Ok(f) => f,
        Err(e) => {
            #[cfg(feature = "server")]
            if let Some(s) = server {
                s.shutdown();
            }
            daemon.shutdown();
            return Err(e.context("start-up failed; nothing was started"));
        }
    };
    #[cfg(not(feature = "fleet"))]
    if cfg.fleet.is_some() {
        tracing::warn!("[fleet] is set but this build has no fleet mode (cargo feature `fleet`); running as a single host");
    }
    #[cfg(feature = "notify")]
    let stop_digest = Arc::new(std::sync::atomic::AtomicBool::new(false));
    #[cfg(feature = "notify")]
    let digest = (!once)
        .then(|| palisade_notify::digest::spawn_daily(&cfg, stop_digest.clone()))
        .flatten();
    // The cloud audit on its own thread, when [audit] interval is set.
    #[cfg(feature = "audit")]
    let audit = match (!once)
        .then(|| audit_cmd::Scheduler::spawn(&cfg))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            #[cfg(feature = "fleet")]
            if let Some(f) = fleet {
                f.shutdown();
            }
            #[cfg(feature = "server")]
            if let Some(s) = server {
                s.shutdown();
            }
            daemon.shutdown();
            return Err(e.context("start-up failed; nothing was started"));
        }
    };
    #[cfg(feature = "audit")]
    let audit_reload = audit.as_ref().map(|a| a.reloader());
    tracing::info!(config = %config, "palisade running");
    let stop_all = |daemon: Daemon| {
        #[cfg(feature = "fleet")]
        if let Some(f) = fleet {
            f.shutdown();
        }
        #[cfg(feature = "audit")]
        if let Some(a) = audit {
            a.stop(std::time::Duration::from_secs(5));
        }
        #[cfg(feature = "server")]
        if let Some(s) = server {
            s.shutdown();
        }
        #[cfg(feature = "notify")]
        {
            stop_digest.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = digest {
                let _ = t.join();
            }
        }
        daemon.shutdown();
    };
    if once {
        daemon.wait_sources();
        let errors = daemon.source_errors();
        stop_all(daemon);
        if !errors.is_empty() {
            bail!("source errors: {}", errors.join("; "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Signals become requests to this thread, like `palisade reload` does.
    let supervisor = daemon.supervisor();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == signal_hook::consts::SIGHUP {
                    supervisor.reload(None);
                } else {
                    supervisor.stop();
                    break;
                }
            }
        })
        .context("starting the signal thread")?;
    while let Supervise::Reload(reply) = daemon.wait() {
        let loaded = src
            .load()
            .map(|mut new| {
                if dry_run {
                    new.general.dry_run = true;
                }
                new
            })
            .map_err(|e| format!("{e:#}"));
        // An invalid [audit] refuses the whole reload, like any other section.
        #[cfg(feature = "audit")]
        let loaded = loaded.and_then(|c| {
            audit_cmd::check_config(&c)
                .map(|()| c)
                .map_err(|e| format!("{e:#}"))
        });
        #[cfg(feature = "audit")]
        let (accepted, reloads) = (
            loaded.as_ref().ok().cloned(),
            daemon
                .stats()
                .reloads
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        daemon.reload_with(loaded, reply);
        #[cfg(feature = "audit")]
        if let (Some(a), Some(c)) = (&audit_reload, accepted) {
            if daemon
                .stats()
                .reloads
                .load(std::sync::atomic::Ordering::Relaxed)
                > reloads
            {
                a.reload(&c);
            }
        }
    }
    tracing::info!("stopping");
    stop_all(daemon);
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(log: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || log == "-" {
        return None;
    }
    let len = std::fs::metadata(log).ok()?.len();
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .ok()?,
    );
    Some(pb)
}

fn check(
    log: &str,
    filter: &str,
    mode: ModeArg,
    filter_option: &[String],
    json: bool,
    now: Option<&str>,
    max_line: usize,
) -> Result<ExitCode> {
    let now = parse_now(now)?;
    let opts = palisade_filter::BuiltinOptions {
        mode: match mode {
            ModeArg::Normal => palisade_filter::Mode::Normal,
            ModeArg::Aggressive => palisade_filter::Mode::Aggressive,
        },
        tz: jiff::tz::TimeZone::system(),
    };
    let mut options = std::collections::BTreeMap::new();
    for kv in filter_option {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--filter-option {kv:?}: expected KEY=VALUE"))?;
        if k.trim() == "mode" {
            bail!("--filter-option mode=…: a built-in filter takes --mode");
        }
        options.insert(k.trim().to_string(), v.to_string());
    }
    let mut f = palisade_filter::build_builtin_with(filter, &opts, &options)?;
    let pb = progress_bar(log);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_err = None;
    let mut on_match = |line_no: u64, _line: &[u8], events: &[palisade_core::Event]| {
        if !json {
            return;
        }
        for e in events {
            let mut o = serde_json::Map::new();
            o.insert("line".into(), line_no.into());
            o.insert("time".into(), e.time.to_string().into());
            o.insert("ip".into(), e.ip.to_string().into());
            o.insert("rule".into(), (*e.rule).into());
            if !e.failure {
                o.insert("failure".into(), false.into());
            }
            if let Some(u) = &e.user {
                o.insert("user".into(), (**u).into());
            }
            for (k, v) in &e.fields {
                o.insert((**k).into(), (**v).into());
            }
            let r = serde_json::to_writer(&mut out, &o).map_err(std::io::Error::from);
            if let Err(err) = r.and_then(|_| out.write_all(b"\n")) {
                write_err.get_or_insert(err);
            }
        }
    };
    let mut progress = |b: u64| {
        if let Some(pb) = &pb {
            pb.set_position(b)
        }
    };
    let rep = offline::check(
        f.as_mut(),
        &offline::spec_for(log),
        max_line,
        now,
        &mut on_match,
        &mut progress,
    )?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    drop(out);
    let rate = rep.lines as f64 / rep.seconds.max(1e-9);
    let mut summary = format!(
        "Lines: {} read, {} matched, {} missed, {} ignored, {} cut (over {} bytes)\nRules:\n",
        rep.lines, rep.matched, rep.missed, rep.ignored, rep.cut_lines, max_line
    );
    for (r, n) in &rep.rules {
        summary.push_str(&format!("  {r:<28} {n}\n"));
    }
    if !rep.unreadable_header.is_empty() {
        summary.push_str("Unreadable headers:\n");
        for (r, n) in &rep.unreadable_header {
            summary.push_str(&format!("  {r:<28} {n}\n"));
        }
    }
    if rep.ambiguous > 0 {
        summary.push_str(&format!(
            "Ambiguous (address not told apart from attacker text, not blamed): {}\n",
            rep.ambiguous
        ));
    }
    summary.push_str(&format!(
        "Time: {:.3} s ({:.0} lines/s)\n",
        rep.seconds, rate
    ));
    if json {
        eprint!("{summary}");
    } else {
        std::io::stdout().lock().write_all(summary.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(log: &str, config: &Path, json: bool, now: Option<&str>) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let now = parse_now(now)?;
    let pb = progress_bar(log);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut on_decision = |d: &palisade_core::Decision| {
        let _ = if json {
            serde_json::to_writer(&mut out, &offline::decision_json(d))
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n"))
        } else {
            writeln!(
                out,
                "{}  ban {:<22} jail={} for {}  ({})",
                d.created,
                if d.target.prefix_len() == d.target.max_prefix_len() {
                    d.target.addr().to_string()
                } else {
                    d.target.to_string()
                },
                d.jail,
                d.duration()
                    .map_or("ever".to_string(), palisade_detect::fmt_duration),
                d.reason
            )
        };
    };
    let mut progress = |b: u64| {
        if let Some(pb) = &pb {
            pb.set_position(b)
        }
    };
    let rep = offline::replay(
        &cfg,
        &offline::spec_for(log),
        now,
        &mut on_decision,
        &mut progress,
    )?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    out.flush()?;
    let summary = format!(
        "Lines: {}, failures: {}, bans: {} of {} targets, time: {:.3} s ({:.0} lines/s)\n",
        rep.lines,
        rep.failures,
        rep.bans,
        rep.banned_targets,
        rep.seconds,
        rep.lines as f64 / rep.seconds.max(1e-9)
    );
    if json {
        eprint!("{summary}");
    } else {
        std::io::stdout().lock().write_all(summary.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn decisions(config: &Path, cmd: DecisionsCmd) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let now = SystemClock.now();
    match cmd {
        DecisionsCmd::List {
            all,
            ip,
            jail,
            limit,
            offset,
            json,
        } => {
            let mut store = palisade_pipeline::open_store(&cfg)?;
            let q = palisade_store::DecisionQuery {
                target: ip
                    .as_deref()
                    .map(parse_target)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                jail,
                origin: None,
                active_at: if all { None } else { Some(now) },
                limit: Some(offset.saturating_add(limit)),
            };
            let total = store.decision_count(&q)?;
            let list: Vec<_> = store
                .decisions(&q)?
                .into_iter()
                .skip(offset as usize)
                .collect();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if json {
                for d in &list {
                    serde_json::to_writer(&mut out, d)?;
                    out.write_all(b"\n")?;
                }
            } else {
                writeln!(
                    out,
                    "{:>6}  {:<24} {:<10} {:<9} {:<8} {:<23} {:<23} reason",
                    "id", "target", "jail", "origin", "status", "created", "expires"
                )?;
                for s in &list {
                    let d = &s.decision;
                    writeln!(
                        out,
                        "{:>6}  {:<24} {:<10} {:<9} {:<8} {:<23} {:<23} {}{}",
                        d.id,
                        d.target.to_string(),
                        d.jail,
                        d.origin.as_str(),
                        format!("{:?}", s.status).to_lowercase(),
                        short_time(d.created),
                        d.expires.map_or("never".into(), short_time),
                        if d.simulated { "[simulated] " } else { "" },
                        d.reason
                    )?;
                }
                writeln!(out, "{}", page_line(offset, list.len(), total))?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        DecisionsCmd::Add {
            target,
            duration,
            reason,
        } => {
            let t = parse_target(&target).map_err(anyhow::Error::msg)?;
            let dur = duration
                .as_deref()
                .map(palisade_config::parse_ban_duration)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let d = manual_decision(t, dur, &reason, now);
            let banned = manual::ban_or_record(&cfg, vec![d], manual::Enforce::Now)?;
            if let Some((_, why)) = banned.refused.first() {
                bail!("{why}");
            }
            match banned.via {
                manual::Via::Daemon => println!("banned {t} (daemon)"),
                manual::Via::Store => {
                    println!("banned {t} (recorded; the daemon is not running)")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DecisionsCmd::Delete { target, if_exists } => {
            let t = parse_target(&target).map_err(anyhow::Error::msg)?;
            // What is in force and covers the target, read before lifting to say what went.
            let before =
                palisade_pipeline::open_store(&cfg)?.decisions(&palisade_store::DecisionQuery {
                    target: Some(t),
                    active_at: Some(now),
                    limit: Some(10_000),
                    ..Default::default()
                })?;
            let (via, n) = manual::unban_or_revoke(&cfg, t)?;
            if n == 0 && before.is_empty() {
                eprintln!(
                    "palisade: nothing to lift: no ban in force covers {}",
                    show_target(&t)
                );
                return Ok(ExitCode::from(if if_exists { 0 } else { 1 }));
            }
            let mut out = std::io::stdout().lock();
            for s in &before {
                let d = &s.decision;
                let what = if d.target == t {
                    format!("lifted {}", show_target(&d.target))
                } else {
                    format!(
                        "lifted {} (covers {})",
                        show_target(&d.target),
                        show_target(&t)
                    )
                };
                writeln!(
                    out,
                    "{what}  jail={} origin={}{}",
                    d.jail,
                    d.origin.as_str(),
                    if d.simulated { " [simulated]" } else { "" }
                )?;
            }
            if before.is_empty() {
                writeln!(out, "lifted {n} ban(s) of {t}")?;
            }
            match via {
                manual::Via::Daemon => writeln!(out, "(through the running daemon)")?,
                manual::Via::Store => {
                    writeln!(out, "(recorded in the store; the daemon is not running)")?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `198.51.100.7` for a single address, the CIDR otherwise.
fn show_target(t: &ipnet::IpNet) -> String {
    if t.prefix_len() == t.max_prefix_len() {
        t.addr().to_string()
    } else {
        t.to_string()
    }
}

/// `showing 1-100 of 2,345; --limit/--offset for more` (or `showing all 12`).
fn page_line(offset: u32, shown: usize, total: u64) -> String {
    let first = u64::from(offset) + 1;
    let last = u64::from(offset) + shown as u64;
    if total == 0 {
        "no decisions".to_string()
    } else if shown == 0 {
        format!("showing none of {} (offset {offset})", thousands(total))
    } else if first == 1 && last >= total {
        format!("showing all {}", thousands(total))
    } else if last < total {
        format!(
            "showing {}-{} of {}; --limit/--offset for more",
            thousands(first),
            thousands(last),
            thousands(total)
        )
    } else {
        format!(
            "showing {}-{} of {}",
            thousands(first),
            thousands(last),
            thousands(total)
        )
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A time in the system's zone, with the zone (`2026-12-04 16:03:12 UTC`).
fn short_time(t: Timestamp) -> String {
    t.to_jiff()
        .to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}
