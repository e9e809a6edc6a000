//! Operator actions on the server's store (work whether or not the server runs) and the
//! agents report shared by `palisade fleet agents` and, later, the HTTP API.

use crate::ident::{sha256_hex, Token};
use crate::FleetError;
use palisade_core::Timestamp;
use palisade_store::fleet::FleetStore;
use std::path::Path;
use std::time::Duration;

/// Creates an enrollment token (`uses` enrollments, valid for `ttl`); creates the server
/// certificate when it does not exist yet. Returns the token text.
pub fn token_add(
    store: &mut dyn FleetStore,
    state_dir: &Path,
    uses: u32,
    ttl: Option<Duration>,
) -> Result<String, FleetError> {
    if uses == 0 {
        return Err(FleetError::Usage("--uses must be at least 1".into()));
    }
    // On a shared store: the fleet's certificate, whichever server's host this runs on.
    let cert = crate::cluster::server_cert(state_dir, store)?;
    let token = Token::new(&cert.fingerprint);
    let now = crate::now();
    let expires = ttl.map(|d| Timestamp(now.0.saturating_add(d.as_micros() as i64)));
    store.token_add(&sha256_hex(token.secret.as_bytes()), uses, expires, now)?;
    Ok(token.encode())
}

pub use palisade_store::fleet::AgentReport;

/// Every agent (revoked ones included), by name.
pub fn agents(store: &mut dyn FleetStore) -> Result<Vec<AgentReport>, FleetError> {
    Ok(palisade_store::fleet::agent_reports(store, crate::now())?)
}

/// Revokes an agent; the running server cuts its connection within a second.
pub fn revoke(store: &mut dyn FleetStore, name: &str) -> Result<(), FleetError> {
    if store.revoke(name)? {
        Ok(())
    } else {
        Err(FleetError::Usage(format!(
            "no enrolled agent named {name:?} (see `palisade fleet agents`)"
        )))
    }
}

/// Longest reviewed block list file read (bytes) and most entries taken from it.
pub const BLOCK_FILE_MAX: u64 = 16 << 20;
/// Most entries one `fleet block` appends.
pub const BLOCK_MAX_ENTRIES: usize = 100_000;

/// Whether a network may be banned: its first and last addresses are bannable (this refuses
/// `0.0.0.0/0`, `::/0`, broadcast, multicast and any block that reaches into them).
pub fn net_is_bannable(n: &ipnet::IpNet) -> bool {
    let n = palisade_core::canonical_net(*n);
    palisade_core::is_bannable(n.network()) && palisade_core::is_bannable(n.broadcast())
}

/// Parses a reviewed block list: one address or CIDR a line, `#` comments and blank lines
/// ignored. `origin` names the file in errors (`FILE:LINE: …`); the first bad line fails the
/// whole list.
pub fn parse_block_list(text: &str, origin: &str) -> Result<Vec<ipnet::IpNet>, FleetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            let shown: String = l.chars().take(80).collect();
            FleetError::Usage(format!("{origin}:{}: {shown:?}: {why}", i + 1))
        };
        let net = match l.parse::<ipnet::IpNet>() {
            Ok(n) => n,
            Err(_) => match l.parse::<std::net::IpAddr>() {
                Ok(ip) => palisade_core::target_of(ip),
                Err(_) => return Err(bad("not an IP address or CIDR network")),
            },
        };
        if !net_is_bannable(&net) {
            return Err(bad(
                "not bannable (unspecified, broadcast or multicast, or a block reaching them)",
            ));
        }
        if out.len() == BLOCK_MAX_ENTRIES {
            return Err(bad(&format!("more than {BLOCK_MAX_ENTRIES} entries")));
        }
        out.push(palisade_core::canonical_net(net));
    }
    Ok(out)
}

/// Appends `targets` to the fleet ban log as bans scoped to `agents` (`None` = all agents),
/// in one transaction. Every name must be an enrolled agent not revoked (the unknown ones are
/// listed in the error, and nothing is appended). Returns how many entries were appended.
pub fn block(
    store: &mut dyn FleetStore,
    targets: &[ipnet::IpNet],
    agents: Option<&[String]>,
    duration: Option<Duration>,
    reason: &str,
) -> Result<usize, FleetError> {
    let scope = match agents {
        None => None,
        Some(names) => {
            if names.is_empty() {
                return Err(FleetError::Usage("--agents names no agent".into()));
            }
            let known: Vec<String> = store
                .agents()?
                .into_iter()
                .filter(|a| !a.revoked)
                .map(|a| a.name)
                .collect();
            let unknown: Vec<&str> = names
                .iter()
                .filter(|n| !known.contains(n))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(FleetError::Usage(format!(
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
    let now = crate::now();
    let expires = duration.map(|d| Timestamp(now.0.saturating_add(d.as_micros() as i64)));
    let entries: Vec<palisade_store::fleet::FleetLogEntry> = targets
        .iter()
        .map(|t| palisade_store::fleet::FleetLogEntry {
            seq: 0,
            action: "ban".into(),
            target: *t,
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
