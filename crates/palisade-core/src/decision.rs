//! [`Decision`]: an enforcement instruction (ban an address or a network until a time).

use crate::Timestamp;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A jail's detector crossed its threshold.
    Jail,
    /// The recidive jail: an address banned repeatedly across jails.
    Recidive,
    /// An operator (`palisade decisions add`, API, dashboard).
    Manual,
    /// Handed over by fail2ban through `palisade record`.
    Fail2ban,
    /// Pushed by a fleet server (fleet mode); `"remote"` is still read as this.
    #[serde(alias = "remote")]
    Fleet,
}

impl Origin {
    /// Stable lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Jail => "jail",
            Origin::Recidive => "recidive",
            Origin::Manual => "manual",
            Origin::Fail2ban => "fail2ban",
            Origin::Fleet => "fleet",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "jail" => Origin::Jail,
            "recidive" => Origin::Recidive,
            "manual" => Origin::Manual,
            "fail2ban" => Origin::Fail2ban,
            "fleet" | "remote" => Origin::Fleet,
            _ => return Err(format!("unknown origin {s:?}")),
        })
    }
}

/// A ban of one address (/32, /128) or one network, until `expires` (never, if `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Store id; 0 until stored.
    pub id: i64,
    /// What is banned.
    pub target: IpNet,
    /// The jail that asked for it (`manual` for operator bans).
    pub jail: String,
    /// Who asked.
    pub origin: Origin,
    /// Human-readable reason (`5 failures in 10m (sshd)`).
    pub reason: String,
    /// When it was taken (event time for detections).
    pub created: Timestamp,
    /// When it ends; `None` is permanent.
    pub expires: Option<Timestamp>,
    /// Dry-run: recorded but never applied to a firewall.
    pub simulated: bool,
    /// How many earlier bans of this target preceded this one (escalation step, 0 = first).
    pub level: u32,
}

impl Decision {
    /// Whether the decision is in force at `now`.
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    /// Time left at `now` (`None` = permanent, zero if over).
    pub fn remaining(&self, now: Timestamp) -> Option<std::time::Duration> {
        self.expires.map(|e| e.since(now))
    }

    /// The planned length of the ban (`None` = permanent).
    pub fn duration(&self) -> Option<std::time::Duration> {
        self.expires.map(|e| e.since(self.created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity() {
        let d = Decision {
            id: 0,
            target: "1.2.3.4/32".parse().unwrap(),
            jail: "sshd".into(),
            origin: Origin::Jail,
            reason: "test".into(),
            created: Timestamp::from_secs(100),
            expires: Some(Timestamp::from_secs(200)),
            simulated: false,
            level: 0,
        };
        assert!(d.active_at(Timestamp::from_secs(199)));
        assert!(!d.active_at(Timestamp::from_secs(200)));
        assert_eq!(d.duration(), Some(std::time::Duration::from_secs(100)));
        assert_eq!("fail2ban".parse::<Origin>().unwrap(), Origin::Fail2ban);
        assert!("x".parse::<Origin>().is_err());
    }

    #[test]
    fn fleet_origin_reads_the_old_remote_name() {
        assert_eq!(Origin::Fleet.as_str(), "fleet");
        assert_eq!("fleet".parse::<Origin>().unwrap(), Origin::Fleet);
        assert_eq!("remote".parse::<Origin>().unwrap(), Origin::Fleet);
        let o: Origin = serde_json::from_str("\"remote\"").unwrap();
        assert_eq!(o, Origin::Fleet);
        assert_eq!(serde_json::to_string(&Origin::Fleet).unwrap(), "\"fleet\"");
    }
}
