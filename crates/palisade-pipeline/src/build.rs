//! Building runtime parts from a validated [`Config`]: filters, responders, engine settings.
//! Everything fallible happens here, before any thread starts, so a bad configuration never
//! leaves a half-started daemon.

use palisade_config::{Config, JailSection, ResponderSection};
use palisade_core::Allowlist;
use palisade_detect::{EngineConfig, Escalation, JailParams, RecidiveParams};
use palisade_filter::{BuiltinOptions, Filter, Mode};
use palisade_respond::{
    CommandResponder, CommandTemplate, IpsetConfig, IpsetResponder, LogResponder, NftConfig,
    NftResponder, Responder, UfwConfig, UfwResponder,
};
use std::time::Duration;

/// Something that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A jail's filter could not be built.
    #[error("jail {jail:?}: {message}")]
    Filter {
        /// Jail name.
        jail: String,
        /// What went wrong.
        message: String,
    },
    /// A responder could not be built.
    #[error("responder {name:?}: {message}")]
    Responder {
        /// Responder name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The time zone is unknown.
    #[error("[general] timezone {0:?}: {1}")]
    TimeZone(String, String),
    /// `[store] password_file` could not be read.
    #[error("[store] password_file {path}: {message}")]
    PasswordFile {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] palisade_store::StoreError),
}

/// The store URL of a configuration, with the password of `[store] password_file` filled in
/// (PostgreSQL). Every command, the daemon and the HTTP server open the store through this.
pub fn store_url(cfg: &Config) -> Result<String, BuildError> {
    let Some(pf) = &cfg.store.password_file else {
        return Ok(cfg.store.url.clone());
    };
    let pw = std::fs::read_to_string(cfg.resolve(pf)).map_err(|e| BuildError::PasswordFile {
        path: pf.clone(),
        message: e.to_string(),
    })?;
    Ok(palisade_store::with_password(&cfg.store.url, pw.trim())?)
}

/// Opens (and migrates) the configured store; see [`store_url`].
pub fn open_store(cfg: &Config) -> Result<Box<dyn palisade_store::Store>, BuildError> {
    Ok(palisade_store::open(&store_url(cfg)?)?)
}

/// The time zone for timestamps without one.
pub fn time_zone(cfg: &Config) -> Result<jiff::tz::TimeZone, BuildError> {
    if cfg.general.timezone == "system" {
        return Ok(jiff::tz::TimeZone::system());
    }
    jiff::tz::TimeZone::get(&cfg.general.timezone)
        .map_err(|e| BuildError::TimeZone(cfg.general.timezone.clone(), e.to_string()))
}

/// Builds a jail's filter.
pub fn build_filter(
    cfg: &Config,
    jail: &JailSection,
    tz: &jiff::tz::TimeZone,
) -> Result<Box<dyn Filter>, BuildError> {
    let name = jail.name.get_ref().clone();
    if let Some(f) = &jail.filter {
        let mode = match jail.options.get("mode").map(String::as_str) {
            Some("aggressive") => Mode::Aggressive,
            _ => Mode::Normal,
        };
        let opts = BuiltinOptions {
            mode,
            tz: tz.clone(),
        };
        return palisade_filter::build_builtin_with(f.get_ref(), &opts, &jail.options).map_err(
            |e| BuildError::Filter {
                jail: name,
                message: e.to_string(),
            },
        );
    }
    let Some(file) = jail.filter_file.as_ref() else {
        return Err(BuildError::Filter {
            jail: name,
            message: "missing `filter` (built-in name) or `filter_file`".into(),
        });
    };
    let path = cfg.resolve(file.get_ref());
    // The jail's `options` are the filter's `[Init]` overrides, as fail2ban's
    // `filter = name[mode=aggressive]`. `logtype = journal` also tells the filter that lines
    // carry no date of their own.
    let mut init: Vec<(String, String)> = jail
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // fail2ban's systemd backend reads messages without a date: `logtype = journal`.
    if jail.journal.is_some() && !jail.options.contains_key("logtype") {
        init.push(("logtype".into(), "journal".into()));
    }
    let opts = palisade_fail2ban::LoadOptions {
        init,
        ..palisade_fail2ban::LoadOptions::default()
    };
    let f = palisade_fail2ban::Fail2banFilter::load(&path, &opts, tz.clone()).map_err(|e| {
        BuildError::Filter {
            jail: name,
            message: format!("filter_file {}: {e}", path.display()),
        }
    })?;
    Ok(Box::new(f))
}

/// Builds one responder from its section.
pub fn build_responder(r: &ResponderSection) -> Result<Box<dyn Responder>, BuildError> {
    if let Some(f) = build_firewall(r)? {
        return Ok(f.into_responder());
    }
    let name = r.name.get_ref().clone();
    let err = |message: String| BuildError::Responder {
        name: name.clone(),
        message,
    };
    match r.kind.get_ref().as_str() {
        "log" => Ok(Box::new(LogResponder::new(name.clone()))),
        "command" => {
            let ban = CommandTemplate::new(r.ban.clone().unwrap_or_default()).map_err(&err)?;
            let unban = r
                .unban
                .clone()
                .map(CommandTemplate::new)
                .transpose()
                .map_err(&err)?;
            let timeout = r.timeout.map_or(Duration::from_secs(30), |t| t.0);
            Ok(Box::new(CommandResponder::new(
                name.clone(),
                ban,
                unban,
                timeout,
            )))
        }
        other => Err(err(format!("unknown responder type {other}"))),
    }
}

/// A firewall responder as its concrete type: `palisade firewall status|flush|uninstall`
/// needs more than the [`Responder`] trait (reading back, flushing, removing).
#[derive(Debug)]
pub enum Firewall {
    /// `type = "nftables"`.
    Nft(NftResponder),
    /// `type = "ipset"`.
    Ipset(IpsetResponder),
    /// `type = "ufw"`.
    Ufw(UfwResponder),
}

impl Firewall {
    /// The same object as a [`Responder`].
    pub fn into_responder(self) -> Box<dyn Responder> {
        match self {
            Firewall::Nft(r) => Box::new(r),
            Firewall::Ipset(r) => Box::new(r),
            Firewall::Ufw(r) => Box::new(r),
        }
    }
}

/// Builds a firewall responder (`nftables`, `ipset`, `ufw`) from its section, exactly as the
/// daemon does; `Ok(None)` for the other types (`command`, `log`).
pub fn build_firewall(r: &ResponderSection) -> Result<Option<Firewall>, BuildError> {
    let name = r.name.get_ref().clone();
    let err = |e: palisade_respond::RespondError| BuildError::Responder {
        name: name.clone(),
        message: e.to_string(),
    };
    Ok(Some(match r.kind.get_ref().as_str() {
        "nftables" => {
            let mut c = NftConfig::default();
            if let Some(t) = &r.table {
                c.table = t.clone();
            }
            if let Some(p) = r.priority {
                c.priority = p;
            }
            c.forward = r.forward.unwrap_or(false);
            c.ports = r.ports.clone().unwrap_or_default();
            c.netns = r.netns.clone();
            Firewall::Nft(NftResponder::new(name.clone(), c).map_err(err)?)
        }
        "ipset" => {
            let c = IpsetConfig {
                ports: r.ports.clone().unwrap_or_default(),
                netns: r.netns.clone(),
                ..IpsetConfig::default()
            };
            Firewall::Ipset(IpsetResponder::new(name.clone(), c).map_err(err)?)
        }
        "ufw" => {
            let c = UfwConfig {
                ports: r.ports.clone().unwrap_or_default(),
                ..UfwConfig::default()
            };
            Firewall::Ufw(UfwResponder::new(name.clone(), c).map_err(err)?)
        }
        _ => return Ok(None),
    }))
}

/// Detection settings for the enabled jails (in configuration order).
pub fn build_engine_config(cfg: &Config) -> EngineConfig {
    let d = &cfg.defaults;
    let escalation = cfg
        .escalation
        .as_ref()
        .filter(|e| e.enabled)
        .map(|e| Escalation {
            factor: e.factor,
            max: e.max.0,
            window: e.window.0,
        });
    let jails = cfg
        .jails
        .iter()
        .filter(|j| j.enabled)
        .map(|j| JailParams {
            name: j.name.get_ref().as_str().into(),
            max_retry: j.max_retry.unwrap_or(d.max_retry),
            find_time: j.find_time.unwrap_or(d.find_time).0,
            ban_time: j.ban_time.unwrap_or(d.ban_time).0,
            escalation: escalation.clone(),
            v6_prefix: j.ipv6_prefix.unwrap_or(d.ipv6_prefix),
            max_keys: j.max_keys.unwrap_or(d.max_keys),
            dry_run: j.dry_run,
        })
        .collect();
    EngineConfig {
        jails,
        recidive: cfg
            .recidive
            .as_ref()
            .filter(|r| r.enabled)
            .map(|r| RecidiveParams {
                max_retry: r.max_retry,
                find_time: r.find_time.0,
                ban_time: r.ban_time.0,
            }),
        allowlist: Allowlist::new(cfg.allowlist.parsed.iter().copied()),
        dry_run: cfg.general.dry_run,
    }
}
