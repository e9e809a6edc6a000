//! AWS credentials: environment, `~/.aws/credentials` profiles, and the temporary credentials
//! `AssumeRole` returns. The secret parts live in [`Secret`], whose `Debug` shows nothing.

use crate::error::AuditError;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret string: printed as `***`, never logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One set of credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Access key id (not secret: it appears in every signed request).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
}

impl Credentials {
    /// Static credentials.
    pub fn new(id: &str, secret: &str, token: Option<&str>) -> Self {
        Credentials {
            access_key_id: id.to_string(),
            secret_access_key: Secret::new(secret),
            session_token: token.map(Secret::new),
        }
    }

    /// Credentials as the AWS tools find them: `profile` (or `AWS_PROFILE`) from the shared
    /// credentials file when given; otherwise `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
    /// (/`AWS_SESSION_TOKEN`); otherwise the `default` profile.
    pub fn resolve(profile: Option<&str>) -> Result<Self, AuditError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(p) = profile {
            return Self::from_profile(&credentials_file(), p);
        }
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Self::new(&id, &secret, env("AWS_SESSION_TOKEN").as_deref()));
        }
        let p = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        Self::from_profile(&credentials_file(), &p).map_err(|e| {
            AuditError::Credentials(format!(
                "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment and {}",
                e.to_string().trim_start_matches("credentials: ")
            ))
        })
    }

    /// Reads one profile of an INI-style shared credentials file.
    pub fn from_profile(path: &Path, profile: &str) -> Result<Self, AuditError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            AuditError::Credentials(format!("profile {profile:?}: {}: {e}", path.display()))
        })?;
        if meta.len() > 1 << 20 {
            return Err(AuditError::Credentials(format!(
                "{}: larger than 1 MiB",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            AuditError::Credentials(format!("profile {profile:?}: {}: {e}", path.display()))
        })?;
        let (mut id, mut secret, mut token) = (None, None, None);
        let mut in_profile = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim();
                in_profile = name == profile || name.strip_prefix("profile ") == Some(profile);
                continue;
            }
            if !in_profile {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().to_string();
                match k.trim() {
                    "aws_access_key_id" => id = Some(v),
                    "aws_secret_access_key" => secret = Some(v),
                    "aws_session_token" => token = Some(v),
                    _ => {}
                }
            }
        }
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(Self::new(&id, &secret, token.as_deref())),
            _ => Err(AuditError::Credentials(format!(
                "profile {profile:?} with aws_access_key_id and aws_secret_access_key not found in {}",
                path.display()
            ))),
        }
    }
}

fn credentials_file() -> PathBuf {
    if let Some(p) = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".aws").join("credentials")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_file_and_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(
            &p,
            "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n\
             [prod]\naws_access_key_id=A2\naws_secret_access_key=S2\naws_session_token=T2\n",
        )
        .unwrap();
        let c = Credentials::from_profile(&p, "prod").unwrap();
        assert_eq!(c.access_key_id, "A2");
        assert_eq!(c.secret_access_key.expose(), "S2");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("S2") && !dbg.contains("T2"), "{dbg}");
        assert_eq!(
            Credentials::from_profile(&p, "default")
                .unwrap()
                .access_key_id,
            "A1"
        );
        let e = Credentials::from_profile(&p, "nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
