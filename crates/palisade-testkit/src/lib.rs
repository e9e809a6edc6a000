//! Test helpers shared by every crate's tests (a dev-dependency only; no dependencies).
//!
//! **Skips.** A test that needs something this machine may lack (PostgreSQL, network
//! namespaces, fail2ban's files, a GeoIP database, the `../shared` data, a generated log, a
//! browser) calls [`require_or_skip`] where it would give up. Without
//! `PALISADE_REQUIRE_<FLAG>` it prints `SKIP: …` and the test returns (passes); with it, the
//! test fails. `scripts/test.sh` (CI) sets every flag, so nothing skips there.
//!
//! | flag | needs |
//! |---|---|
//! | `PG` | `PALISADE_TEST_PG_URL` (a PostgreSQL server, `scripts/with-postgres.sh`) |
//! | `NETNS` | root, `ip netns`, nft/iptables/ipset/ufw, sshd |
//! | `F2B` | Debian's fail2ban package (filters, test logs) |
//! | `GEOIP` | `PALISADE_TEST_GEOIP` (a country `.mmdb`, `scripts/install-geoip.sh`) |
//! | `SHARED` | the `../shared` folder next to the checkout (real logs, peers' harnesses) |
//! | `LOG` | `PALISADE_SSHD_LOG` (the generated 1M-line sshd log, `bench/gen/gen_logs.py`) |
//! | `JOURNAL` | a readable systemd journal and `logger` |

#![warn(missing_docs)]

use std::path::PathBuf;

/// Whether `PALISADE_REQUIRE_<flag>` is set (to anything but `0` or empty).
pub fn required(flag: &str) -> bool {
    std::env::var(format!("PALISADE_REQUIRE_{flag}"))
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}

/// The one way a test skips: panics when `PALISADE_REQUIRE_<flag>` is set, otherwise prints
/// `SKIP: <reason>` (on stderr and stdout, so it shows with and without `--nocapture`) and
/// returns, so the caller can `return` right after.
///
/// ```no_run
/// let Ok(url) = std::env::var("PALISADE_TEST_PG_URL") else {
///     return palisade_testkit::require_or_skip("PG", "PALISADE_TEST_PG_URL is not set");
/// };
/// # let _ = url;
/// ```
#[track_caller]
pub fn require_or_skip(flag: &str, reason: &str) {
    if required(flag) {
        panic!("PALISADE_REQUIRE_{flag} is set, but: {reason}");
    }
    eprintln!("SKIP: {reason} (set PALISADE_REQUIRE_{flag}=1 to make this a failure)");
    println!("SKIP: {reason}");
}

/// The workspace root (the folder holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate lives in `<root>/crates/palisade-testkit`.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}

/// The shared data folder: `PALISADE_SHARED`, else `../shared` next to the workspace root.
/// `None` (after [`require_or_skip`] with flag `SHARED`) when it is absent.
#[track_caller]
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PALISADE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        require_or_skip(
            "SHARED",
            &format!("shared data folder {} is missing", dir.display()),
        );
        None
    }
}

/// A file under the shared data folder, or `None` (after a skip) when it or the folder is
/// missing.
#[track_caller]
pub fn shared_file(rel: &str) -> Option<PathBuf> {
    let p = shared_dir()?.join(rel);
    if p.exists() {
        Some(p)
    } else {
        require_or_skip("SHARED", &format!("{} is missing", p.display()));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_without_the_flag_and_fails_with_it() {
        // A flag no environment sets.
        require_or_skip("TESTKIT_SELFTEST", "nothing to see");
        std::env::set_var("PALISADE_REQUIRE_TESTKIT_SELFTEST2", "1");
        let r = std::panic::catch_unwind(|| require_or_skip("TESTKIT_SELFTEST2", "missing"));
        assert!(r.is_err());
        std::env::set_var("PALISADE_REQUIRE_TESTKIT_SELFTEST3", "0");
        assert!(!required("TESTKIT_SELFTEST3"));
    }

    #[test]
    fn finds_the_workspace_root() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("crates/palisade-testkit").is_dir());
    }
}
