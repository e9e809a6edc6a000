//! Secrets and identities: random values, SHA-256, the enrollment token
//! (`pst1.<secret>.<fingerprint>`) and the agent's `identity.json`.

use crate::FleetError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::fill(&mut v).expect("the OS random source works");
    v
}

/// A random u64 below 2^63 (stored in signed 64-bit columns).
pub fn random_u63() -> u64 {
    let b = random_bytes(8);
    u64::from_le_bytes(b.try_into().expect("8 bytes")) >> 1
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// An enrollment token: a one-time secret and the server certificate's fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The secret (base64url, 32 random bytes).
    pub secret: String,
    /// SHA-256 of the server certificate (DER), lower-case hex.
    pub fingerprint: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"***")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Token {
    /// A new random secret for this fingerprint.
    pub fn new(fingerprint: &str) -> Token {
        Token {
            secret: b64(&random_bytes(32)),
            fingerprint: fingerprint.to_string(),
        }
    }

    /// `pst1.<secret>.<fingerprint>`.
    pub fn encode(&self) -> String {
        format!("pst1.{}.{}", self.secret, self.fingerprint)
    }

    /// Reads a token; the message never repeats the secret.
    pub fn parse(s: &str) -> Result<Token, FleetError> {
        let bad = || {
            FleetError::Usage(
                "the token is not a fleet enrollment token (expected pst1.SECRET.FINGERPRINT, as `palisade fleet token add` prints)".into(),
            )
        };
        let mut it = s.trim().split('.');
        if it.next() != Some("pst1") {
            return Err(bad());
        }
        let secret = it.next().ok_or_else(bad)?;
        let fp = it.next().ok_or_else(bad)?;
        if it.next().is_some()
            || secret.len() < 16
            || secret.len() > 128
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || fp.len() != 64
            || !fp
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(bad());
        }
        Ok(Token {
            secret: secret.into(),
            fingerprint: fp.into(),
        })
    }
}

/// What an enrolled agent keeps in `<state_dir>/fleet/identity.json` (mode 0600).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// Server URLs (`wss://…`).
    pub urls: Vec<String>,
    /// Pinned server certificate fingerprint.
    pub fingerprint: String,
    /// Agent id.
    pub agent_id: String,
    /// Agent name.
    pub name: String,
    /// Secret key.
    pub key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("urls", &self.urls)
            .field("agent_id", &self.agent_id)
            .field("name", &self.name)
            .field("key", &"***")
            .finish()
    }
}

/// `<state_dir>/fleet`.
pub fn fleet_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("fleet")
}

/// Creates `dir` (0700) if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), FleetError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| FleetError::Io(format!("creating {}: {e}", dir.display())))
}

/// Writes `data` to `path` with mode 0600, atomically (temp file + rename).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), FleetError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        FleetError::Io(format!("writing {}: {e}", path.display()))
    })
}

impl Identity {
    /// The file in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        fleet_dir(state_dir).join("identity.json")
    }

    /// Reads it (`None` when not enrolled).
    pub fn load(state_dir: &Path) -> Result<Option<Identity>, FleetError> {
        let p = Self::path(state_dir);
        match std::fs::read(&p) {
            Ok(b) if b.len() < 64 * 1024 => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| FleetError::Io(format!("{}: {e}", p.display()))),
            Ok(_) => Err(FleetError::Io(format!("{}: too large", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FleetError::Io(format!("{}: {e}", p.display()))),
        }
    }

    /// Writes it (0600).
    pub fn save(&self, state_dir: &Path) -> Result<(), FleetError> {
        ensure_dir(&fleet_dir(state_dir))?;
        write_private(
            &Self::path(state_dir),
            &serde_json::to_vec_pretty(self).expect("serialises"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let t = Token::new(&sha256_hex(b"cert"));
        let s = t.encode();
        assert!(s.starts_with("pst1."));
        assert_eq!(Token::parse(&s).unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
        for bad in [
            "",
            "pst2.aaaaaaaaaaaaaaaaaaaa.00",
            &s.replace("pst1.", "pst1.x."),
            &format!("pst1.{}.{}", "a".repeat(20), "G".repeat(64)),
            &format!("pst1.{}.{}", "a b".repeat(10), "0".repeat(64)),
        ] {
            let e = Token::parse(bad).unwrap_err().to_string();
            assert!(!e.contains(&t.secret), "{e}");
        }
    }

    #[test]
    fn identity_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        assert!(Identity::load(d.path()).unwrap().is_none());
        let id = Identity {
            urls: vec!["wss://x:1".into()],
            fingerprint: "f".into(),
            agent_id: "a".into(),
            name: "web1".into(),
            key: "secret".into(),
        };
        id.save(d.path()).unwrap();
        assert_eq!(Identity::load(d.path()).unwrap().unwrap(), id);
        let mode = std::fs::metadata(Identity::path(d.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{id:?}").contains("secret"));
    }
}
