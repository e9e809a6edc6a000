//! Glue between the daemon and the HTTP server (`[server]`), and the `palisade user` and
//! `palisade token` commands. `run()` builds the feed hub and its observer before
//! `Daemon::start`, then starts the server with the daemon's control handle, and stops the
//! server before the daemon.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ipnet::IpNet;
use palisade_config::Config;
use palisade_core::{Clock, Decision, Event, SystemClock};
use palisade_pipeline::control::{unexpected, Reply, Request};
use palisade_pipeline::{ControlHandle, Daemon, Observer};
use palisade_server::{
    ControlApi, ControlError, FeedHub, FeedItem, GeoPaths, ServerConfig, ServerHandle,
    StatusReport, TlsFiles,
};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `palisade user …`
#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a dashboard account, or set its password.
    Add {
        /// Login name.
        name: String,
        /// Read the password from this file (first line) instead of prompting.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List dashboard accounts (name, created, last login).
    List,
    /// Delete a dashboard account; its open sessions end with it.
    Delete {
        /// Login name.
        name: String,
    },
}

/// `palisade token …`
#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an API token (printed once; only its hash is stored).
    Add {
        /// `read` (GET only) or `admin` (everything).
        #[arg(long, value_parser = ["read", "admin"])]
        scope: String,
        /// Label shown in listings and logs.
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List API tokens.
    List,
    /// Delete an API token.
    Delete {
        /// Token id (from `palisade token list`).
        id: i64,
    },
}

/// The daemon's control handle as the server's [`ControlApi`].
pub struct DaemonControl(pub ControlHandle);

impl ControlApi for DaemonControl {
    fn status(&self) -> Result<StatusReport, ControlError> {
        match self.0.call(Request::Status)? {
            Reply::Status(s) => Ok(*s),
            other => Err(unexpected(&other)),
        }
    }

    fn ban(
        &self,
        target: IpNet,
        duration: Option<Duration>,
        reason: &str,
    ) -> Result<Decision, ControlError> {
        match self.0.call(Request::Ban {
            target,
            duration_secs: duration.map(|d| d.as_secs()),
            reason: reason.to_owned(),
        })? {
            Reply::Banned(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    fn unban(&self, target: IpNet) -> Result<u64, ControlError> {
        match self.0.call(Request::Unban { target })? {
            Reply::Lifted(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    fn set_allowlist(&self, db_entries: Vec<IpNet>) -> Result<(), ControlError> {
        match self.0.call(Request::SetAllowlist { extra: db_entries })? {
            Reply::AllowlistSet(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

/// Publishes the daemon's events and decisions on the live feed.
struct FeedObserver(FeedHub);

impl Observer for FeedObserver {
    fn event(&self, jail: &str, event: &Event) {
        // Building the item allocates: only when someone watches.
        if self.0.has_subscribers() {
            self.0.publish(FeedItem::event(jail, event));
        }
    }

    fn ban(&self, decision: &Decision) {
        self.0.publish(FeedItem::Ban {
            decision: decision.clone(),
        });
    }

    fn unban(&self, decision: &Decision, reason: palisade_detect::UnbanReason) {
        self.0.publish(FeedItem::Unban {
            decision: decision.clone(),
            reason: format!("{reason:?}").to_lowercase(),
        });
    }
}

/// The observer feeding the live feed, when the server is enabled.
pub fn observer(cfg: &Config, feed: &FeedHub) -> Option<Arc<dyn Observer>> {
    server_enabled(cfg).then(|| Arc::new(FeedObserver(feed.clone())) as Arc<dyn Observer>)
}

fn server_enabled(cfg: &Config) -> bool {
    cfg.server.as_ref().is_some_and(|s| s.enabled)
}

/// Server settings from `[server]` (`None` when absent or disabled).
pub fn server_config(cfg: &Config) -> Option<ServerConfig> {
    let s = cfg.server.as_ref().filter(|s| s.enabled)?;
    let path = |p: &Option<String>| p.as_deref().map(|p| cfg.resolve(p));
    Some(ServerConfig {
        listen: s.listen,
        tls: match (&s.tls_cert, &s.tls_key) {
            (Some(c), Some(k)) => Some(TlsFiles {
                cert: cfg.resolve(c),
                key: cfg.resolve(k),
            }),
            _ => None,
        },
        geoip: GeoPaths {
            country: path(&s.geoip_country).filter(|p| p.is_file()),
            city: path(&s.geoip_city),
            asn: path(&s.geoip_asn),
        },
        conn: palisade_server::ConnLimits {
            max_connections: s.max_connections,
            per_address: s.max_connections_per_address,
            allowed_hosts: s.allowed_hosts.clone(),
            ..Default::default()
        },
        ..ServerConfig::default()
    })
}

/// Starts the HTTP server next to a running daemon (`Ok(None)` when `[server]` is absent or
/// disabled).
pub fn start_server(cfg: &Config, daemon: &Daemon, feed: FeedHub) -> Result<Option<ServerHandle>> {
    let Some(sc) = server_config(cfg) else {
        return Ok(None);
    };
    let control: Arc<dyn ControlApi> = Arc::new(DaemonControl(daemon.control()));
    let h = palisade_server::spawn(sc, palisade_pipeline::store_url(cfg)?, control, feed)
        .context("starting the HTTP server")?;
    Ok(Some(h))
}

fn read_password(file: Option<&PathBuf>) -> Result<String> {
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(text.lines().next().unwrap_or("").to_owned());
    }
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        return Ok(a);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// `palisade user …`
pub fn user(cfg: &Config, cmd: UserCmd) -> Result<ExitCode> {
    match cmd {
        UserCmd::Add {
            name,
            password_file,
        } => {
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                bail!("user names are 1 to 64 printable characters");
            }
            let pw = read_password(password_file.as_ref())?;
            if pw.chars().count() < palisade_server::auth::MIN_PASSWORD {
                bail!(
                    "the password must have at least {} characters",
                    palisade_server::auth::MIN_PASSWORD
                );
            }
            let hash = palisade_server::auth::hash_password(&pw).map_err(anyhow::Error::msg)?;
            let mut store = palisade_pipeline::open_store(cfg)?;
            let existed = store.user(&name)?.is_some();
            store.user_set(&name, &hash, SystemClock.now())?;
            println!(
                "{} user {name}{}",
                if existed { "updated" } else { "created" },
                if existed {
                    " (its open dashboard sessions end within seconds)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::List => {
            let users = palisade_pipeline::open_store(cfg)?.users()?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<24} {:<23} last login", "name", "created")?;
            for u in &users {
                writeln!(
                    out,
                    "{:<24} {:<23} {}",
                    u.name,
                    super::short_time(u.created),
                    u.last_login.map_or("never".into(), super::short_time)
                )?;
            }
            writeln!(
                out,
                "{} user{}",
                users.len(),
                if users.len() == 1 { "" } else { "s" }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::Delete { name } => {
            if !palisade_pipeline::open_store(cfg)?.user_remove(&name)? {
                eprintln!("palisade: no user {name:?}");
                return Ok(ExitCode::from(1));
            }
            println!("deleted user {name} (their dashboard sessions end with it)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `palisade token …`
pub fn token(cfg: &Config, cmd: TokenCmd) -> Result<ExitCode> {
    let mut store = palisade_pipeline::open_store(cfg)?;
    match cmd {
        TokenCmd::Add { scope, name } => {
            let (token, hash) = palisade_server::auth::new_api_token();
            let id = store.token_add(&name, &scope, &hash, SystemClock.now())?;
            eprintln!("token {id} ({name}, scope {scope}); shown only now:");
            println!("{token}");
        }
        TokenCmd::List => {
            println!("{:>4}  {:<6} {:<20} created", "id", "scope", "name");
            for t in store.tokens()? {
                println!(
                    "{:>4}  {:<6} {:<20} {}",
                    t.id,
                    t.scope,
                    t.name,
                    super::short_time(t.created)
                );
            }
        }
        TokenCmd::Delete { id } => {
            if !store.token_remove(id)? {
                bail!("no token {id}");
            }
            println!("deleted token {id} (a running server forgets it within 10 s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
