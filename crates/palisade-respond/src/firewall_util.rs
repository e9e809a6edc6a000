//! Helpers shared by the firewall responders (nftables, ipset/iptables, ufw): running a
//! program with a document on standard input and capturing its output, the optional
//! network-namespace wrapper, and the [`FirewallStatus`] report.
//!
//! Still no shell: every program is an argv vector, and `ip netns exec` is itself run as argv.

use crate::RespondError;
use ipnet::IpNet;
use palisade_core::{Decision, Timestamp};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `ip` program used to enter a network namespace (`ip netns exec NS …`).
pub const IP_PROGRAM: &str = "/usr/sbin/ip";

/// Cap on captured standard output (a 1M-element set listing is ~60 MB of JSON).
const MAX_STDOUT: u64 = 256 << 20;

/// The protocols and destination ports a responder's drop rules match, from its
/// `protocols` and `ports` settings: sorted, deduplicated, TCP and UDP when only ports are
/// given (no protocol and no port: every packet).
pub fn match_lists(
    protocols: &[crate::nft::Protocol],
    ports: &[u16],
) -> (Vec<&'static str>, Vec<u16>) {
    let mut protos: Vec<&'static str> = protocols.iter().map(|p| p.as_str()).collect();
    protos.sort_unstable();
    protos.dedup();
    if protos.is_empty() && !ports.is_empty() {
        protos = vec!["tcp", "udp"];
    }
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    (protos, ports)
}

/// What a firewall responder currently enforces, read back from the firewall itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirewallStatus {
    /// Whether Palisade's table/sets/chain exist at all.
    pub installed: bool,
    /// Banned networks with the time left (`None` = permanent), sorted.
    pub elements: Vec<(IpNet, Option<Duration>)>,
    /// Packets dropped by Palisade's rules since they were (re)created, when the firewall
    /// keeps counters.
    pub dropped_packets: Option<u64>,
    /// Bytes dropped by Palisade's rules, when known.
    pub dropped_bytes: Option<u64>,
}

/// Output of a program run by [`run_program`].
#[derive(Debug, Default)]
pub struct ProgramOutput {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error (first 4 KiB).
    pub stderr: String,
}

/// Checks a network-namespace name as accepted by `ip netns` (one path component).
pub fn validate_netns(name: &str) -> Result<(), RespondError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RespondError::Config(format!(
            "invalid network namespace name {name:?} (letters, digits, '-', '_', '.'; at most 64)"
        )))
    }
}

/// Prefixes `argv` with `ip netns exec NS` when a namespace is configured.
pub fn wrap_netns(netns: Option<&str>, argv: Vec<String>) -> Vec<String> {
    match netns {
        None => argv,
        Some(ns) => {
            let mut v = Vec::with_capacity(argv.len() + 4);
            v.extend([IP_PROGRAM, "netns", "exec", ns].map(String::from));
            v.extend(argv);
            v
        }
    }
}

/// Runs `argv` (no shell, environment reduced to `PATH` and `LANG=C`), feeding `stdin` when
/// given (otherwise standard input is closed), capturing standard output and error. A
/// non-zero exit is [`RespondError::Failed`] with the start of standard error; exceeding
/// `timeout` kills the program.
pub fn run_program(
    argv: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<ProgramOutput, RespondError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut child = Command::new(&program)
        .args(argv.get(1..).unwrap_or_default())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RespondError::Spawn {
            program: program.clone(),
            source,
        })?;
    // Readers and the writer run on their own threads so a large document and a large
    // listing can never deadlock on full pipes, and a stuck program still hits the timeout.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let pipe = child.stdin.take();
    std::thread::scope(|scope| {
        let out_t = scope.spawn(move || {
            let mut b = Vec::new();
            let _ = out.by_ref().take(MAX_STDOUT).read_to_end(&mut b);
            // Drain the rest so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut out, &mut std::io::sink());
            b
        });
        let err_t = scope.spawn(move || {
            let mut b = Vec::new();
            let _ = err.by_ref().take(4096).read_to_end(&mut b);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            b
        });
        let in_t = scope.spawn(move || match (stdin, pipe) {
            // Dropping the pipe closes it: the program sees end of input.
            (Some(data), Some(mut pipe)) => pipe.write_all(data),
            _ => Ok(()),
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    // Killing closes the pipes, which ends the helper threads.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RespondError::Failed {
                        program: program.clone(),
                        status: format!("timeout after {timeout:?}"),
                        stderr: String::new(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RespondError::Spawn {
                        program: program.clone(),
                        source,
                    });
                }
            }
        };
        let write_result = in_t.join().unwrap_or(Ok(()));
        let stdout = out_t.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default())
            .trim()
            .to_string();
        if !status.success() {
            return Err(RespondError::Failed {
                program: program.clone(),
                status: status.to_string(),
                stderr,
            });
        }
        // A broken pipe with a successful exit means the program chose not to read it all.
        if let Err(e) = write_result {
            return Err(RespondError::Other(format!(
                "{program}: writing standard input: {e}"
            )));
        }
        Ok(ProgramOutput { stdout, stderr })
    })
}

/// Time left for `d` at `now` in whole seconds, rounded up: `None` if the decision is over
/// (skip it), `Some(None)` if permanent, `Some(Some(s))` with `s >= 1` otherwise.
pub fn remaining_secs(d: &Decision, now: Timestamp) -> Option<Option<u64>> {
    match d.expires {
        None => Some(None),
        Some(e) if e <= now => None,
        Some(e) => {
            let micros = e.since(now).as_micros();
            Some(Some(micros.div_ceil(1_000_000).max(1) as u64))
        }
    }
}

/// Whether a failed program run says "the thing does not exist" (used to treat deleting
/// something absent as success).
pub fn is_not_found(e: &RespondError) -> bool {
    match e {
        RespondError::Failed { stderr, .. } => {
            let s = stderr.to_ascii_lowercase();
            s.contains("no such file or directory")
                || s.contains("does not exist")
                || s.contains("no chain/target/match by that name")
                || s.contains("bad rule (does a matching rule exist")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::Origin;

    #[test]
    fn netns_names() {
        assert!(validate_netns("palisade-t-12_3.a").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_netns(bad).is_err(), "{bad:?}");
        }
        let v = wrap_netns(Some("ns1"), vec!["/usr/sbin/nft".into(), "-j".into()]);
        assert_eq!(
            v,
            [
                "/usr/sbin/ip",
                "netns",
                "exec",
                "ns1",
                "/usr/sbin/nft",
                "-j"
            ]
        );
        assert_eq!(wrap_netns(None, vec!["/a".into()]), ["/a"]);
    }

    #[test]
    fn remaining() {
        let mut d = Decision {
            id: 1,
            target: "192.0.2.1/32".parse().unwrap(),
            jail: "j".into(),
            origin: Origin::Jail,
            reason: String::new(),
            created: Timestamp::from_secs(100),
            expires: Some(Timestamp::from_secs(200)),
            simulated: false,
            level: 0,
        };
        assert_eq!(
            remaining_secs(&d, Timestamp::from_secs(100)),
            Some(Some(100))
        );
        assert_eq!(remaining_secs(&d, Timestamp(199_999_999)), Some(Some(1)));
        assert_eq!(remaining_secs(&d, Timestamp(150_500_000)), Some(Some(50)));
        assert_eq!(remaining_secs(&d, Timestamp::from_secs(200)), None);
        d.expires = None;
        assert_eq!(remaining_secs(&d, Timestamp::from_secs(200)), Some(None));
    }

    #[test]
    fn stdin_and_stdout() {
        let big = vec![b'x'; 1 << 20];
        let out = run_program(&["/bin/cat".into()], Some(&big), Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout.len(), big.len());
        let e = run_program(
            &["/bin/ls".into(), "/nonexistent-palisade-path".into()],
            None,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nonexistent-palisade-path"), "{e}");
        let e = run_program(
            &["/bin/sleep".into(), "5".into()],
            None,
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(e.to_string().contains("timeout"));
    }
}
