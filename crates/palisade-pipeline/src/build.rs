//! Building runtime parts from a validated [`Config`]: filters, responders, engine settings.
//! Everything fallible happens here, before any thread starts, so a bad configuration never
//! leaves a half-started daemon.

use palisade_config::{
    Config, IpsetSection, JailSection, NftablesSection, ResponderSection, ResponderSpec, UfwSection,
};
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
    /// A jail's fail2ban filter file could not be loaded: where (the file, or a file it
    /// includes, and the line when known) and why.
    #[error("jail {jail:?}: filter_file {}: {}{message}", filter_file.display(), place(file, *line))]
    FilterFile {
        /// Jail name.
        jail: String,
        /// The jail's `filter_file`.
        filter_file: std::path::PathBuf,
        /// The file the problem is in.
        file: std::path::PathBuf,
        /// Its 1-based line, when known.
        line: Option<usize>,
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
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] palisade_store::StoreError),
}

fn place(file: &std::path::Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}: ", file.display()),
        None => format!("{}: ", file.display()),
    }
}

/// The store URL of a configuration, with the password of `[store] password_file` filled in
/// (PostgreSQL). Every command, the daemon and the HTTP server open the store through this
/// (or [`open_store`]); the reading itself is `palisade_store::url_with_password_file`.
pub fn store_url(cfg: &Config) -> Result<String, BuildError> {
    let pf = cfg.store.password_file.as_deref();
    let path = pf.map(|p| cfg.resolve(p));
    Ok(palisade_store::url_with_password_file(
        &cfg.store.url,
        pf.zip(path.as_deref()),
    )?)
}

/// Opens (and migrates) the configured store; see [`store_url`].
pub fn open_store(cfg: &Config) -> Result<Box<dyn palisade_store::Store>, BuildError> {
    Ok(palisade_store::open(&store_url(cfg)?)?)
}

/// The time zone for timestamps without one ([`Config::time_zone`]).
pub fn time_zone(cfg: &Config) -> Result<jiff::tz::TimeZone, BuildError> {
    cfg.time_zone()
        .map_err(|e| BuildError::TimeZone(cfg.general.timezone.clone(), e))
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
    #[cfg(not(feature = "fail2ban"))]
    {
        let _ = tz;
        Err(BuildError::Filter {
            jail: name,
            message: format!(
                "filter_file {}: this build has no fail2ban support (cargo feature `fail2ban`)",
                path.display()
            ),
        })
    }
    #[cfg(feature = "fail2ban")]
    {
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
            let (file, line) = e.place();
            BuildError::FilterFile {
                jail: name,
                filter_file: path.clone(),
                file: file.to_path_buf(),
                line,
                message: e.reason(),
            }
        })?;
        Ok(Box::new(f))
    }
}

/// Builds one responder from its section: one arm per [`ResponderSpec`] type. Adding a
/// responder type adds one arm here (and one in [`build_firewall`] if it is a firewall that
/// `palisade firewall` manages).
pub fn build_responder(r: &ResponderSection) -> Result<Box<dyn Responder>, BuildError> {
    let name = r.name.get_ref().clone();
    let err = |message: String| BuildError::Responder {
        name: name.clone(),
        message,
    };
    Ok(match &r.spec {
        ResponderSpec::Nftables(n) => Box::new(nft(&name, n)?),
        ResponderSpec::Ipset(i) => Box::new(ipset(&name, i)?),
        ResponderSpec::Ufw(u) => Box::new(ufw(&name, u)?),
        ResponderSpec::Log(_) => Box::new(LogResponder::new(name.clone())),
        ResponderSpec::Command(c) => {
            let ban = CommandTemplate::new(c.ban.clone().unwrap_or_default()).map_err(&err)?;
            let unban = c
                .unban
                .clone()
                .map(CommandTemplate::new)
                .transpose()
                .map_err(&err)?;
            let timeout = c.timeout.map_or(Duration::from_secs(30), |t| t.0);
            Box::new(CommandResponder::new(name.clone(), ban, unban, timeout))
        }
    })
}

fn respond_err(name: &str) -> impl Fn(palisade_respond::RespondError) -> BuildError + '_ {
    move |e| BuildError::Responder {
        name: name.to_string(),
        message: e.to_string(),
    }
}

fn nft(name: &str, n: &NftablesSection) -> Result<NftResponder, BuildError> {
    let mut c = NftConfig::default();
    if let Some(t) = &n.table {
        c.table = t.clone();
    }
    if let Some(p) = n.priority {
        c.priority = p;
    }
    c.forward = n.forward.unwrap_or(false);
    c.ports = n.ports.clone().unwrap_or_default();
    c.netns = n.netns.clone();
    NftResponder::new(name.to_string(), c).map_err(respond_err(name))
}

fn ipset(name: &str, i: &IpsetSection) -> Result<IpsetResponder, BuildError> {
    let c = IpsetConfig {
        ports: i.ports.clone().unwrap_or_default(),
        netns: i.netns.clone(),
        ..IpsetConfig::default()
    };
    IpsetResponder::new(name.to_string(), c).map_err(respond_err(name))
}

fn ufw(name: &str, u: &UfwSection) -> Result<UfwResponder, BuildError> {
    let c = UfwConfig {
        ports: u.ports.clone().unwrap_or_default(),
        ..UfwConfig::default()
    };
    UfwResponder::new(name.to_string(), c).map_err(respond_err(name))
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
    let name = r.name.get_ref();
    Ok(Some(match &r.spec {
        ResponderSpec::Nftables(n) => Firewall::Nft(nft(name, n)?),
        ResponderSpec::Ipset(i) => Firewall::Ipset(ipset(name, i)?),
        ResponderSpec::Ufw(u) => Firewall::Ufw(ufw(name, u)?),
        ResponderSpec::Command(_) | ResponderSpec::Log(_) => return Ok(None),
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
