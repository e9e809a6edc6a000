//! The `[audit]` table of a Palisade configuration file, read on its own (other sections are
//! ignored here and checked by `palisade config check`).

use crate::error::AuditError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// `[audit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Regions audited (`--region` replaces them).
    pub regions: Vec<String>,
    /// Regions read at the same time.
    pub max_concurrency: usize,
    /// Rule ids switched off.
    pub disabled: Vec<String>,
    /// Severity overrides: rule id → `low|medium|high|critical`.
    pub severity: BTreeMap<String, String>,
    /// secgroup_suspicious_ingress: protocols never reported.
    pub allowed_protocols: Vec<String>,
    /// secgroup_suspicious_ingress: single ports never reported.
    pub allowed_ports: Vec<i32>,
    /// secgroup_suspicious_ingress: source ranges never reported (a range inside one is fine).
    pub whitelisted_ips: Vec<ipnet::IpNet>,
    /// secgroup_suspicious_ingress: `"sg-id (name)"` → `"port"` or `"from-to"` → ranges allowed.
    pub whitelisted_entries: BTreeMap<String, BTreeMap<String, Vec<ipnet::IpNet>>>,
    /// elb_listener_port_not_allowed: listener ports allowed.
    pub elb_allowed_ports: Vec<i32>,
    /// ec2_new_ami_in_use: an AMI carrying one of these tags (`key` or `key=value`) is not
    /// reported.
    pub allowed_tags: Vec<String>,
    /// iam_user_group_added: users whose name matches one of these regexes are not reported.
    pub allowed: Vec<String>,
    /// ec2_securitygroup_allow_ingress_from_internet_to_high_risk_tcp_ports: the ports.
    pub high_risk_tcp_ports: Vec<i32>,
    /// iam_rotate_access_key_90_days: largest key age in days.
    pub max_key_age_days: i64,
    /// Other accounts, entered with `AssumeRole`; when present, only these are audited.
    pub accounts: Vec<AccountConfig>,
    /// Elasticsearch/OpenSearch output.
    pub elasticsearch: Option<ElasticConfig>,
    /// Daemon schedule (`6h`): `palisade run` audits this often (±10 % jitter); also the
    /// period of `palisade audit run` without `--once`.
    pub interval: Option<String>,
    /// One endpoint for every AWS service instead of AWS's own (a moto or LocalStack server;
    /// `--endpoint` replaces it). Leave unset for AWS.
    pub endpoint: Option<String>,
}

/// `[[audit.accounts]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Label.
    pub name: Option<String>,
    /// The role to assume.
    pub role_arn: String,
    /// The ExternalId the role's trust policy requires.
    pub external_id: Option<String>,
}

/// `[audit.elasticsearch]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticConfig {
    /// Base URL (`http://127.0.0.1:9200`).
    pub url: String,
    /// Index.
    #[serde(default = "default_index")]
    pub index: String,
}

fn default_index() -> String {
    "palisade-audit".into()
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            regions: vec![],
            max_concurrency: 4,
            disabled: vec![],
            severity: BTreeMap::new(),
            allowed_protocols: vec!["icmp".into()],
            allowed_ports: vec![22, 80, 443],
            whitelisted_ips: vec![],
            whitelisted_entries: BTreeMap::new(),
            elb_allowed_ports: vec![80, 443],
            allowed_tags: vec![],
            allowed: vec![],
            high_risk_tcp_ports: vec![25, 110, 135, 143, 445, 3000, 4333, 5000, 5500, 8080, 8088],
            max_key_age_days: 90,
            accounts: vec![],
            elasticsearch: None,
            interval: None,
            endpoint: None,
        }
    }
}

impl AuditConfig {
    /// Reads `[audit]` of a TOML file (absent = defaults).
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuditError::Config(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| AuditError::Config(format!("{}: {e}", path.display())))
    }

    /// Reads `[audit]` of a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        match doc.get("audit") {
            Some(v) => Self::from_value(v.clone()),
            None => Ok(Self::default()),
        }
    }

    /// Reads an `[audit]` table already parsed.
    pub fn from_value(v: toml::Value) -> Result<Self, String> {
        let c: AuditConfig = v
            .try_into()
            .map_err(|e: toml::de::Error| format!("[audit]: {e}"))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        for r in self.disabled.iter().chain(self.severity.keys()) {
            if crate::rules::info(r).is_none() {
                return Err(format!(
                    "[audit]: unknown rule {r:?} (known: {})",
                    crate::rules::RULES
                        .iter()
                        .map(|r| r.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for (r, s) in &self.severity {
            crate::rules::Severity::parse(s).ok_or_else(|| {
                format!("[audit] severity of {r}: {s:?} is not low|medium|high|critical")
            })?;
        }
        for re in &self.allowed {
            regex::Regex::new(re).map_err(|e| format!("[audit] allowed {re:?}: {e}"))?;
        }
        for (sg, ports) in &self.whitelisted_entries {
            for p in ports.keys() {
                parse_port_key(p).ok_or_else(|| {
                    format!(
                        "[audit] whitelisted_entries {sg:?}: {p:?} is not \"port\" or \"from-to\""
                    )
                })?;
            }
        }
        if self.max_concurrency == 0 || self.max_concurrency > 64 {
            return Err("[audit] max_concurrency must be 1..=64".into());
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() > 2048 {
                return Err(format!(
                    "[audit] endpoint {e:?}: expected an http:// or https:// URL"
                ));
            }
        }
        if let Some(i) = &self.interval {
            parse_interval(i)
                .ok_or_else(|| format!("[audit] interval {i:?}: expected like 6h, 30m"))?;
        }
        Ok(())
    }
}

/// `"22"` → (22, 22); `"1000-2000"` → (1000, 2000).
pub fn parse_port_key(s: &str) -> Option<(i32, i32)> {
    match s.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let p = s.trim().parse().ok()?;
            Some((p, p))
        }
    }
}

/// `6h`, `30m`, `1d`, `90s` → seconds.
pub fn parse_interval(s: &str) -> Option<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    (n > 0).then_some(n * mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_other_sections() {
        let c = AuditConfig::from_toml("[store]\nurl='x'\n[[jail]]\nname='a'\n").unwrap();
        assert_eq!(c.allowed_ports, vec![22, 80, 443]);
        assert_eq!(c.allowed_protocols, vec!["icmp"]);
        let c = AuditConfig::from_toml(
            "[audit]\nallowed_ports=[22]\nwhitelisted_entries={\"sg-1 (web)\"={\"8080\"=[\"1.2.3.4/32\"]}}\n",
        )
        .unwrap();
        assert_eq!(c.allowed_ports, vec![22]);
        assert!(AuditConfig::from_toml("[audit]\nbogus=1\n")
            .unwrap_err()
            .contains("bogus"));
        assert!(AuditConfig::from_toml("[audit]\ndisabled=['nope']\n")
            .unwrap_err()
            .contains("nope"));
        assert!(
            AuditConfig::from_toml("[audit]\nwhitelisted_entries={\"sg-1 (a)\"={\"x\"=[]}}\n")
                .is_err()
        );
        assert_eq!(parse_interval("6h"), Some(21600));
        assert_eq!(parse_port_key("1000-2000"), Some((1000, 2000)));
    }
}
