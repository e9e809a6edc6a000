//! `palisade fleet …` and the fleet roles of `palisade run` (cargo feature `fleet`).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ipnet::IpNet;
use palisade_config::{Config, FleetRole};
use palisade_core::{Decision, Observer};
use palisade_fleet::agent::{AgentControl, AgentHandle, AgentOptions, LocalBans, LocalBansRx};
use palisade_fleet::server::{FleetServer, ServerOptions};
use palisade_pipeline::{ControlHandle, Daemon};
use palisade_proto::{Reply, Request};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum FleetCmd {
    /// Enrollment tokens (on the server).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Enroll this host as an agent of the server at URL (wss://HOST:PORT).
    Join {
        /// The server's URL.
        url: String,
        /// The token `palisade fleet token add` printed on the server.
        #[arg(long)]
        token: String,
        /// Agent name (default: `[fleet] name`, else the host name).
        #[arg(long)]
        name: Option<String>,
        /// Replace an enrolled agent of the same name (the old identity is revoked).
        #[arg(long)]
        force: bool,
    },
    /// List the agents (on the server), or revoke one.
    Agents {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        cmd: Option<AgentsCmd>,
    },
    /// Push a reviewed block list (one address or CIDR a line, `#` comments) as fleet bans
    /// to the named agents (default: all). Appended to the server's fleet ban log in one
    /// transaction; the running server pushes them within a second.
    Block {
        /// The reviewed list.
        file: PathBuf,
        /// Agents it applies to, comma-separated (default: every agent).
        #[arg(long, value_delimiter = ',')]
        agents: Option<Vec<String>>,
        /// How long the bans last (`1d`, `12h`; default: until lifted).
        #[arg(long)]
        duration: Option<String>,
        /// Why (shown in the agents' decisions).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed alone on the last line of standard output.
    Add {
        /// How many enrollments it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid (`1h`, `1d`; default 1h).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

#[derive(Subcommand)]
pub enum AgentsCmd {
    /// Cut an agent off: its identity is refused from now on and a connected agent is
    /// disconnected within a second.
    Revoke {
        /// Agent name.
        name: String,
    },
}

fn state_dir(cfg: &Config) -> PathBuf {
    PathBuf::from(&cfg.general.state_dir)
}

fn fleet_store(cfg: &Config) -> Result<Box<dyn palisade_store::fleet::FleetStore>> {
    Ok(palisade_store::fleet::open(&palisade_pipeline::store_url(
        cfg,
    )?)?)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `palisade fleet …`
pub fn run_cmd(cfg: &Config, cmd: FleetCmd) -> Result<ExitCode> {
    match cmd {
        FleetCmd::Token {
            cmd: TokenCmd::Add { uses, ttl },
        } => {
            let ttl = palisade_config::parse_duration(&ttl)
                .map_err(|e| anyhow::anyhow!("--ttl {ttl:?}: {e}"))?;
            let sd = state_dir(cfg);
            std::fs::create_dir_all(&sd).with_context(|| format!("{}", sd.display()))?;
            let mut store = fleet_store(cfg)?;
            let token = palisade_fleet::admin::token_add(store.as_mut(), &sd, uses, Some(ttl))?;
            eprintln!(
                "enrollment token ({uses} use{}, valid {}); on the agent run: palisade fleet join wss://THIS-HOST:{} --token TOKEN",
                if uses == 1 { "" } else { "s" },
                palisade_detect::fmt_duration(ttl),
                cfg.fleet.as_ref().map_or(7443, |f| f.listen.port())
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        FleetCmd::Join {
            url,
            token,
            name,
            force,
        } => {
            let name = name
                .or_else(|| cfg.fleet.as_ref().and_then(|f| f.name.clone()))
                .unwrap_or_else(host_name);
            let sd = state_dir(cfg);
            let id = palisade_fleet::agent::join(&url, &token, &name, &sd, force)?;
            println!(
                "enrolled as {} (id {}); identity in {}",
                id.name,
                id.agent_id,
                palisade_fleet::ident::Identity::path(&sd).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        FleetCmd::Agents {
            cmd: Some(AgentsCmd::Revoke { name }),
            ..
        } => {
            let mut store = fleet_store(cfg)?;
            palisade_fleet::admin::revoke(store.as_mut(), &name)?;
            println!("revoked agent {name}");
            Ok(ExitCode::SUCCESS)
        }
        FleetCmd::Block {
            file,
            agents,
            duration,
            reason,
        } => {
            let duration = duration
                .map(|d| {
                    palisade_config::parse_duration(&d)
                        .map_err(|e| anyhow::anyhow!("--duration {d:?}: {e}"))
                })
                .transpose()?;
            let f = std::fs::File::open(&file).with_context(|| format!("{}", file.display()))?;
            let mut text = String::new();
            use std::io::Read;
            f.take(palisade_fleet::admin::BLOCK_FILE_MAX + 1)
                .read_to_string(&mut text)
                .with_context(|| format!("{}", file.display()))?;
            if text.len() as u64 > palisade_fleet::admin::BLOCK_FILE_MAX {
                bail!(
                    "{}: larger than {} bytes",
                    file.display(),
                    palisade_fleet::admin::BLOCK_FILE_MAX
                );
            }
            let targets =
                palisade_fleet::admin::parse_block_list(&text, &file.display().to_string())?;
            let reason =
                reason.unwrap_or_else(|| format!("reviewed block list {}", file.display()));
            let mut store = fleet_store(cfg)?;
            let n = palisade_fleet::admin::block(
                store.as_mut(),
                &targets,
                agents.as_deref(),
                duration,
                &reason,
            )?;
            let to = agents.map_or_else(|| "all agents".to_string(), |a| a.join(", "));
            println!("appended {n} fleet ban(s) for {to}");
            Ok(ExitCode::SUCCESS)
        }
        FleetCmd::Agents { json, cmd: None } => {
            let mut store = fleet_store(cfg)?;
            let agents = palisade_fleet::admin::agents(store.as_mut())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents)?);
                return Ok(ExitCode::SUCCESS);
            }
            if agents.is_empty() {
                println!(
                    "no agents enrolled (palisade fleet token add, then fleet join on the agent)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<20} {:<10} {:<26} {:<8} {:>10} {:>8} {:>10}",
                "NAME", "STATE", "LAST SEEN", "VERSION", "EVENTS", "BACKLOG", "CLOCK"
            );
            for a in agents {
                let state = if a.revoked {
                    "revoked"
                } else if a.connected {
                    "connected"
                } else {
                    "offline"
                };
                let clock = match a.clock_offset_ms {
                    Some(o) if a.skewed => format!("{o:+}ms SKEW"),
                    Some(o) => format!("{o:+}ms"),
                    None => "-".into(),
                };
                println!(
                    "{:<20} {:<10} {:<26} {:<8} {:>10} {:>8} {:>10}",
                    a.name,
                    state,
                    a.last_seen.as_deref().unwrap_or("never"),
                    a.version,
                    a.events,
                    a.backlog,
                    clock
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The daemon's control handle as the agent's way to apply fleet bans.
struct DaemonAgentControl(ControlHandle);

impl AgentControl for DaemonAgentControl {
    fn apply_ban(&self, decision: Decision) -> Result<(), String> {
        match self.0.call(Request::Record { decision }) {
            Ok(Reply::Recorded(_)) => Ok(()),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
    fn lift_ban(&self, target: IpNet) -> Result<(), String> {
        match self.0.call(Request::Unban { target }) {
            Ok(Reply::Lifted(_)) => Ok(()),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Before the daemon starts: the local-ban observer of an agent.
pub struct Prepared {
    rx: Option<LocalBansRx>,
    /// `run --from-start` (a forwarder reads existing content when it has no position).
    pub from_start: bool,
}

/// Observers fleet mode adds to the daemon (an agent reports its own bans).
pub fn prepare(cfg: &Config) -> (Option<Arc<dyn Observer>>, Prepared) {
    match cfg.fleet.as_ref().map(|f| f.role) {
        Some(FleetRole::Agent | FleetRole::Forwarder) => {
            let (obs, rx) = LocalBans::new();
            (
                Some(obs as Arc<dyn Observer>),
                Prepared {
                    rx: Some(rx),
                    from_start: false,
                },
            )
        }
        _ => (
            None,
            Prepared {
                rx: None,
                from_start: false,
            },
        ),
    }
}

/// What runs beside the daemon.
pub enum Running {
    /// The fleet listener.
    Server(FleetServer),
    /// The agent connection.
    Agent(AgentHandle),
}

impl Running {
    /// Stops it.
    pub fn shutdown(self) {
        match self {
            Running::Server(s) => s.shutdown(),
            Running::Agent(a) => a.shutdown(),
        }
    }
}

/// Starts the fleet role of `cfg` beside the daemon.
pub fn start(cfg: &Config, daemon: &Daemon, prepared: Prepared) -> Result<Option<Running>> {
    let Some(f) = &cfg.fleet else {
        return Ok(None);
    };
    let store_url = palisade_pipeline::store_url(cfg)?;
    match f.role {
        FleetRole::Server => {
            let s = palisade_fleet::server::spawn_with(
                ServerOptions {
                    listen: f.listen,
                    state_dir: state_dir(cfg),
                    store_url,
                    share_bans: f.share_bans,
                    max_handshakes: f.max_handshakes,
                    ingest_connections: palisade_fleet::ingest::INGEST_CONNECTIONS,
                },
                palisade_fleet::server::CorrelatorSink::new(&cfg.fleet_jail_settings()).map(|c| {
                    let allow = palisade_core::Allowlist::new(cfg.allowlist.parsed.iter().copied());
                    Box::new(c.with_allowlist(allow)) as Box<dyn palisade_fleet::server::EventSink>
                }),
                Some(crate::forward_cmd::forward_setup(cfg)?),
            )
            .context("starting the fleet server")?;
            let mut s = s;
            if let Err(e) = s.serve_admin(&palisade_proto::fleet_analyze::admin_socket_path(
                std::path::Path::new(&cfg.general.socket),
            )) {
                s.shutdown();
                return Err(anyhow::Error::new(e).context("starting the fleet server"));
            }
            tracing::info!(addr = %s.local_addr(), "fleet server running");
            Ok(Some(Running::Server(s)))
        }
        FleetRole::Agent | FleetRole::Forwarder => {
            let Some(rx) = prepared.rx else {
                bail!("internal: the agent's observer was not prepared");
            };
            let forward = (f.role == FleetRole::Forwarder)
                .then(|| crate::forward_cmd::forwarder(cfg, prepared.from_start))
                .transpose()?;
            let a = palisade_fleet::agent::spawn_with(
                AgentOptions {
                    state_dir: state_dir(cfg),
                    store_url,
                    spool_max_events: f.spool_max_events,
                    spool_max_age: f.spool_max_age.0,
                    checksum_interval: f.checksum_interval.0,
                    analyze: Some(palisade_fleet::remote_analyze::AgentAnalyze::from_config(
                        cfg,
                    )),
                    servers: f.server.clone(),
                },
                Arc::new(DaemonAgentControl(daemon.control())),
                rx,
                forward,
            )
            .context("starting the fleet agent")?;
            Ok(Some(Running::Agent(a)))
        }
    }
}
