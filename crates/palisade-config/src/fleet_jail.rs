//! `[[fleet_jail]]`: correlation across the hosts of a fleet, run by a fleet server over
//! every agent's events (`palisade_detect::correlate`). A server's configuration needs no
//! local `[[jail]]`: the jails named here run on the agents.

use crate::schema::{BanTime, Config, Defaults, Dur};
use crate::{Locator, Problem};
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;
use toml::Spanned;

/// Most hosts a fleet jail can require (`min_hosts`).
pub const MAX_MIN_HOSTS: u32 = 1000;

/// `[[fleet_jail]]`: failures of one offender counted across the agents' events.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetJailSection {
    /// Unique name (also among `[[jail]]` names); fleet bans carry it as their jail.
    pub name: Spanned<String>,
    /// The agents' jails whose failures count (their `[[jail]] name` on the agents); empty
    /// or absent = every jail.
    #[serde(default)]
    pub jails: Vec<Spanned<String>>,
    /// Failures, summed over the hosts, that trigger a fleet ban (default: `[defaults]`).
    pub max_retry: Option<u32>,
    /// Window in which failures are counted, in corrected event time (default: `[defaults]`).
    pub find_time: Option<Dur>,
    /// Length of the fleet ban, or `"forever"` (default: `[defaults]`).
    pub ban_time: Option<BanTime>,
    /// The failures must come from at least this many distinct hosts (default 2).
    #[serde(default = "default_min_hosts")]
    pub min_hosts: u32,
    /// IPv6 offenders are counted and banned per network of this prefix (32 to 128, 128 =
    /// per address; default: `[defaults] ipv6_prefix`, 64).
    pub ipv6_prefix: Option<u8>,
    /// IPv4 offenders are counted and banned per network of this prefix (8 to 32; 32 = per
    /// address, the default; 24 = per /24).
    #[serde(default = "default_ipv4_prefix")]
    pub ipv4_prefix: u8,
}

fn default_min_hosts() -> u32 {
    2
}

fn default_ipv4_prefix() -> u8 {
    32
}

/// A fleet jail's settings with the `[defaults]` applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetJailSettings {
    /// Name.
    pub name: String,
    /// Jails whose failures count; empty = all.
    pub jails: Vec<String>,
    /// Failures that trigger a fleet ban.
    pub max_retry: u32,
    /// Counting window.
    pub find_time: Duration,
    /// Ban length; `None` = permanent.
    pub ban_time: Option<Duration>,
    /// Distinct hosts the failures must come from.
    pub min_hosts: u32,
    /// IPv6 aggregation prefix.
    pub ipv6_prefix: u8,
    /// IPv4 aggregation prefix.
    pub ipv4_prefix: u8,
}

impl FleetJailSection {
    /// The settings, with `[defaults]` filling what the section leaves out.
    pub fn settings(&self, d: &Defaults) -> FleetJailSettings {
        FleetJailSettings {
            name: self.name.get_ref().clone(),
            jails: self.jails.iter().map(|j| j.get_ref().clone()).collect(),
            max_retry: self.max_retry.unwrap_or(d.max_retry),
            find_time: self.find_time.unwrap_or(d.find_time).0,
            ban_time: self.ban_time.unwrap_or(d.ban_time).0,
            min_hosts: self.min_hosts,
            ipv6_prefix: self.ipv6_prefix.unwrap_or(d.ipv6_prefix),
            ipv4_prefix: self.ipv4_prefix,
        }
    }
}

impl Config {
    /// Every `[[fleet_jail]]` with `[defaults]` applied.
    pub fn fleet_jail_settings(&self) -> Vec<FleetJailSettings> {
        self.fleet_jails
            .iter()
            .map(|f| f.settings(&self.defaults))
            .collect()
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Semantic checks of the `[[fleet_jail]]` sections.
pub(crate) fn validate(cfg: &Config, loc: &Locator<'_>, problems: &mut Vec<Problem>) {
    let local: HashSet<&str> = cfg
        .jails
        .iter()
        .map(|j| j.name.get_ref().as_str())
        .collect();
    let mut seen: HashSet<&str> = HashSet::new();
    for f in &cfg.fleet_jails {
        let name = f.name.get_ref().as_str();
        let what = format!("fleet jail {name:?}");
        if !seen.insert(name) {
            problems.push(loc.span(&f.name, format!("{what} is defined twice")));
        }
        if !valid_name(name) || name == "manual" || name == "recidive" {
            problems.push(loc.span(
                &f.name,
                format!("fleet jail name {name:?}: use letters, digits, '_', '-', '.'; \"manual\" and \"recidive\" are reserved"),
            ));
        }
        if local.contains(name) {
            problems.push(loc.span(
                &f.name,
                format!("{what}: a [[jail]] has this name too; give the fleet jail its own name (bans carry it)"),
            ));
        }
        for j in &f.jails {
            if !valid_name(j.get_ref()) {
                problems.push(loc.span(
                    j,
                    format!(
                        "{what}: jails: {:?} is not a jail name (letters, digits, '_', '-', '.')",
                        j.get_ref()
                    ),
                ));
            }
        }
        let s = f.settings(&cfg.defaults);
        if s.max_retry == 0 {
            problems.push(loc.span(&f.name, format!("{what}: max_retry must be at least 1")));
        }
        if s.find_time.is_zero() {
            problems.push(loc.span(
                &f.name,
                format!("{what}: find_time must be at least 1 second"),
            ));
        }
        if !(1..=MAX_MIN_HOSTS).contains(&s.min_hosts) {
            problems.push(loc.span(
                &f.name,
                format!(
                    "{what}: min_hosts {} must be between 1 and {MAX_MIN_HOSTS}",
                    s.min_hosts
                ),
            ));
        }
        if !(32..=128).contains(&s.ipv6_prefix) {
            problems.push(loc.span(
                &f.name,
                format!(
                    "{what}: ipv6_prefix {} must be between 32 and 128 (64 is usual)",
                    s.ipv6_prefix
                ),
            ));
        }
        if !(8..=32).contains(&s.ipv4_prefix) {
            problems.push(loc.span(
                &f.name,
                format!(
                    "{what}: ipv4_prefix {} must be between 8 and 32 (32 = per address, 24 = per /24)",
                    s.ipv4_prefix
                ),
            ));
        }
    }
}
