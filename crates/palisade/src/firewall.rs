//! `palisade firewall status|flush|uninstall`: read back or clean up what the firewall
//! responders (nftables, ipset/iptables, ufw) put in the firewall, without the daemon.
//!
//! The responders are built from the configuration exactly as the daemon builds them
//! ([`palisade_pipeline::build::build_firewall`]), so the table, set and chain names are the
//! ones the daemon uses.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use palisade_config::{Config, ResponderSection};
use palisade_pipeline::build::{build_firewall, Firewall};
use palisade_pipeline::control::{self, Request};
use palisade_respond::FirewallStatus;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `palisade firewall` does.
#[derive(Subcommand)]
pub enum FirewallCmd {
    /// Print the bans the firewall holds, with the time left and the drop counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Empty the ban sets (lift every ban in the firewall; the store keeps its decisions,
    /// so bans still in force come back when the daemon next starts).
    Flush,
    /// Remove Palisade's table, chains and sets (or ufw rules) from the firewall.
    Uninstall {
        /// Proceed even though the daemon is running (it would re-create them on the next
        /// ban).
        #[arg(long)]
        force: bool,
    },
}

/// Firewall responder types.
const FIREWALL_TYPES: &[&str] = &["nftables", "ipset", "ufw"];

/// The firewall responders to act on: `only`, or every firewall responder the configuration
/// uses (defaults, jails) or declares.
fn selected(cfg: &Config, only: Option<&str>) -> Result<Vec<ResponderSection>> {
    if let Some(name) = only {
        let sec = cfg
            .responder(name)
            .with_context(|| format!("no responder {name:?} in {}", cfg.path.display()))?;
        if !FIREWALL_TYPES.contains(&sec.kind.get_ref().as_str()) {
            bail!(
                "responder {name:?} has type {:?}; `palisade firewall` manages {}",
                sec.kind.get_ref(),
                FIREWALL_TYPES.join(", ")
            );
        }
        return Ok(vec![sec]);
    }
    let mut names: Vec<String> = cfg.defaults.responders.clone();
    for j in cfg.jails.iter().filter(|j| j.enabled) {
        names.extend(cfg.jail_responders(j));
    }
    names.extend(cfg.responders.iter().map(|r| r.name.get_ref().clone()));
    let mut out: Vec<ResponderSection> = Vec::new();
    for n in names {
        if out.iter().any(|r| r.name.get_ref() == &n) {
            continue;
        }
        if let Some(sec) = cfg.responder(&n) {
            if FIREWALL_TYPES.contains(&sec.kind.get_ref().as_str()) {
                out.push(sec);
            }
        }
    }
    Ok(out)
}

/// Runs one `palisade firewall` command.
pub fn run(config: &Path, only: Option<&str>, cmd: FirewallCmd) -> Result<ExitCode> {
    let cfg = super::load_config(config)?;
    let sections = selected(&cfg, only)?;
    if sections.is_empty() {
        eprintln!(
            "{}: no firewall responder (nftables, ipset, ufw) in use",
            config.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let FirewallCmd::Uninstall { force: false } = cmd {
        let socket = PathBuf::from(&cfg.general.socket);
        if let Ok(Some(_)) = control::call(&socket, &Request::Status) {
            bail!(
                "the daemon is running (socket {}) and would re-create the firewall state on \
                 its next ban; stop it first, or pass --force",
                socket.display()
            );
        }
    }
    let mut failed = false;
    let mut reports = Vec::new();
    for sec in &sections {
        let name = sec.name.get_ref().clone();
        let kind = sec.kind.get_ref().clone();
        let fw = match build_firewall(sec) {
            Ok(Some(fw)) => fw,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("palisade: {e}");
                failed = true;
                continue;
            }
        };
        let res = match &cmd {
            FirewallCmd::Status { json } => status(fw).map(|st| {
                if *json {
                    reports.push(status_json(&name, &kind, &st));
                } else {
                    print_status(&name, &kind, &st);
                }
            }),
            FirewallCmd::Flush => flush(fw).map(|n| match n {
                Some(n) => println!("{name} ({kind}): removed {n} rule(s)"),
                None => println!("{name} ({kind}): ban sets emptied"),
            }),
            FirewallCmd::Uninstall { .. } => uninstall(fw).map(|what| {
                println!("{name} ({kind}): removed {what}");
            }),
        };
        if let Err(e) = res {
            eprintln!("palisade: responder {name} ({kind}): {e:#}");
            if let FirewallCmd::Status { json: true } = cmd {
                reports.push(serde_json::json!({
                    "name": name, "type": kind, "error": format!("{e:#}")
                }));
            }
            failed = true;
        }
    }
    if let FirewallCmd::Status { json: true } = cmd {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "responders": reports }))?
        );
    }
    if matches!(cmd, FirewallCmd::Flush) && !failed {
        eprintln!(
            "note: the decisions stay recorded; bans still in force are restored when the daemon \
             starts. `palisade decisions delete TARGET` lifts a ban for good."
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn status(fw: Firewall) -> Result<FirewallStatus> {
    Ok(match fw {
        Firewall::Nft(mut r) => r.status()?,
        Firewall::Ipset(mut r) => r.status()?,
        Firewall::Ufw(r) => {
            // ufw keeps no timeouts and no per-rule counters we can attribute.
            let rules = r.current()?;
            let mut elements: Vec<_> = rules
                .iter()
                .filter_map(|spec| spec.get(2))
                .filter_map(|t| palisade_pipeline::daemon::parse_target(t).ok())
                .map(|net| (net, None))
                .collect();
            elements.sort();
            elements.dedup();
            FirewallStatus {
                installed: !elements.is_empty(),
                elements,
                dropped_packets: None,
                dropped_bytes: None,
            }
        }
    })
}

/// Empties the sets; for ufw deletes the rules and returns how many.
fn flush(fw: Firewall) -> Result<Option<usize>> {
    match fw {
        Firewall::Nft(mut r) => r.flush()?,
        Firewall::Ipset(mut r) => r.flush()?,
        Firewall::Ufw(mut r) => {
            let n = r.current()?.len();
            r.flush()?;
            return Ok(Some(n));
        }
    }
    Ok(None)
}

fn uninstall(fw: Firewall) -> Result<String> {
    Ok(match fw {
        Firewall::Nft(mut r) => {
            let t = r.config().table.clone();
            r.uninstall()?;
            format!("table inet {t}")
        }
        Firewall::Ipset(mut r) => {
            let c = r.config().clone();
            r.uninstall()?;
            format!(
                "chain {} (iptables, ip6tables) and ipsets {}, {}",
                c.chain,
                r.set_name(false),
                r.set_name(true)
            )
        }
        Firewall::Ufw(mut r) => {
            let n = r.current()?.len();
            r.flush()?;
            format!("{n} rule(s)")
        }
    })
}

/// A host network as its address, other networks in CIDR form.
fn short(net: &ipnet::IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn print_status(name: &str, kind: &str, st: &FirewallStatus) {
    if !st.installed {
        println!("{name} ({kind}): not installed");
        return;
    }
    let mut head = format!("{name} ({kind}): {} ban(s)", st.elements.len());
    if let Some(p) = st.dropped_packets {
        head.push_str(&format!(", dropped {p} packet(s)"));
        if let Some(b) = st.dropped_bytes {
            head.push_str(&format!(" ({b} bytes)"));
        }
    }
    println!("{head}");
    for (net, left) in &st.elements {
        let left = match left {
            Some(d) => format!("{} left", palisade_detect::fmt_duration(*d)),
            None if kind == "nftables" => "permanent".to_string(),
            // ipset/ufw: no firewall timeout; the daemon lifts the ban when it ends.
            None => "no firewall timeout (lifted by the daemon)".to_string(),
        };
        println!("  {:<40} {left}", short(net));
    }
}

fn status_json(name: &str, kind: &str, st: &FirewallStatus) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "type": kind,
        "installed": st.installed,
        "bans": st.elements.len(),
        "elements": st.elements.iter().map(|(net, left)| serde_json::json!({
            "target": net.to_string(),
            "expires_in_secs": left.map(|d| d.as_secs()),
        })).collect::<Vec<_>>(),
        "dropped_packets": st.dropped_packets,
        "dropped_bytes": st.dropped_bytes,
    })
}
