//! The operator's actions on a fleet server's tables, shared by `palisade fleet agents
//! revoke` / `palisade fleet block` (palisade-fleet's `admin`) and the HTTP API
//! (`POST /api/v1/fleet/agents/{name}/revoke`, `POST /api/v1/fleet/block`): one
//! implementation, below both. They work whether or not the fleet server runs; a running one
//! notices within a second (its poller).

use super::{FleetLogEntry, FleetStore};
use crate::StoreError;
use ipnet::IpNet;
use palisade_core::Timestamp;
use std::time::Duration;

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad input (the message says which and why).
    #[error("{0}")]
    Usage(String),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Longest reviewed block list file read (bytes).
pub const BLOCK_FILE_MAX: u64 = 16 << 20;
/// Most entries one block appends.
pub const BLOCK_MAX_ENTRIES: usize = 100_000;
/// Longest agent name looked up (enrolled names are at most 64 bytes).
pub const NAME_MAX: usize = 64;

/// Whether a network may be banned: its first and last addresses are bannable (this refuses
/// `0.0.0.0/0`, `::/0`, broadcast, multicast and any block that reaches into them).
pub fn net_is_bannable(n: &IpNet) -> bool {
    let n = palisade_core::canonical_net(*n);
    palisade_core::is_bannable(n.network()) && palisade_core::is_bannable(n.broadcast())
}

/// One block list entry: an address or CIDR network, canonical, bannable.
pub fn parse_target(s: &str) -> Result<IpNet, &'static str> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<std::net::IpAddr>() {
            Ok(ip) => palisade_core::target_of(ip),
            Err(_) => return Err("not an IP address or CIDR network"),
        },
    };
    if !net_is_bannable(&net) {
        return Err("not bannable (unspecified, broadcast or multicast, or a block reaching them)");
    }
    Ok(palisade_core::canonical_net(net))
}

/// Parses a reviewed block list: one address or CIDR a line, `#` comments and blank lines
/// ignored. `origin` names the file in errors (`FILE:LINE: …`); the first bad line fails the
/// whole list.
pub fn parse_block_list(text: &str, origin: &str) -> Result<Vec<IpNet>, AdminError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            let shown: String = l.chars().take(80).collect();
            AdminError::Usage(format!("{origin}:{}: {shown:?}: {why}", i + 1))
        };
        let net = parse_target(l).map_err(bad)?;
        if out.len() == BLOCK_MAX_ENTRIES {
            return Err(bad(&format!("more than {BLOCK_MAX_ENTRIES} entries")));
        }
        out.push(net);
    }
    Ok(out)
}

/// Revokes the agent named `name`; a running server cuts its connection within a second.
pub fn revoke(store: &mut dyn FleetStore, name: &str) -> Result<(), AdminError> {
    if name.len() <= NAME_MAX && store.revoke(name)? {
        Ok(())
    } else {
        let shown = palisade_core::escape_untrusted(name);
        Err(AdminError::Usage(format!(
            "no enrolled agent named \"{shown}\" (see `palisade fleet agents`)"
        )))
    }
}

/// Appends `targets` to the fleet ban log as bans scoped to `agents` (`None` = all agents),
/// in one transaction, created at `now`. Every name must be an enrolled agent not revoked
/// (the unknown ones are listed in the error, and nothing is appended). Returns how many
/// entries were appended.
pub fn block(
    store: &mut dyn FleetStore,
    targets: &[IpNet],
    agents: Option<&[String]>,
    duration: Option<Duration>,
    reason: &str,
    now: Timestamp,
) -> Result<usize, AdminError> {
    if targets.len() > BLOCK_MAX_ENTRIES {
        return Err(AdminError::Usage(format!(
            "more than {BLOCK_MAX_ENTRIES} entries"
        )));
    }
    if let Some(t) = targets.iter().find(|t| !net_is_bannable(t)) {
        return Err(AdminError::Usage(format!("{t}: not bannable")));
    }
    let scope = match agents {
        None => None,
        Some(names) => {
            if names.is_empty() {
                return Err(AdminError::Usage("--agents names no agent".into()));
            }
            let known: Vec<String> = store
                .agents()?
                .into_iter()
                .filter(|a| !a.revoked)
                .map(|a| a.name)
                .collect();
            let unknown: Vec<String> = names
                .iter()
                .filter(|n| !known.contains(n))
                .take(20)
                .map(|n| palisade_core::escape_untrusted(n).to_string())
                .collect();
            if !unknown.is_empty() {
                return Err(AdminError::Usage(format!(
                    "unknown or revoked agent(s): {} (see `palisade fleet agents`)",
                    unknown.join(", ")
                )));
            }
            let mut s = names.to_vec();
            s.sort();
            s.dedup();
            Some(s)
        }
    };
    let expires = duration.map(|d| Timestamp(now.0.saturating_add(d.as_micros() as i64)));
    let entries: Vec<FleetLogEntry> = targets
        .iter()
        .map(|t| FleetLogEntry {
            seq: 0,
            action: "ban".into(),
            target: palisade_core::canonical_net(*t),
            jail: "fleet-block".into(),
            reason: reason.into(),
            created: now,
            expires,
            origin: None,
            scope: scope.clone(),
        })
        .collect();
    Ok(store.log_append_all(&entries)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_list_parsing() {
        let ok = parse_block_list(
            "# reviewed\n\n203.0.113.7\n198.51.100.0/24  # a range\n2001:db8::1\n::ffff:192.0.2.1\n",
            "f.txt",
        )
        .unwrap();
        let shown: Vec<String> = ok.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "203.0.113.7/32",
                "198.51.100.0/24",
                "2001:db8::1/128",
                "192.0.2.1/32"
            ]
        );
        let e = parse_block_list("203.0.113.7\nnonsense\n", "f.txt").unwrap_err();
        assert!(e.to_string().starts_with("f.txt:2: "), "{e}");
        for bad in [
            "0.0.0.0/0",
            "::/0",
            "224.0.0.1",
            "255.255.255.255",
            "128.0.0.0/1",
            "ff02::1",
        ] {
            let e = parse_block_list(&format!("# x\n{bad}\n"), "b").unwrap_err();
            assert!(
                e.to_string().contains("b:2: ") && e.to_string().contains("not bannable"),
                "{bad}: {e}"
            );
        }
    }
}
