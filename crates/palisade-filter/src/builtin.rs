//! Construction of the built-in filters and what they share.

use crate::{Filter, FilterError};
use jiff::tz::TimeZone;
use palisade_core::{Event, Timestamp};
use std::net::IpAddr;
use std::sync::Arc;

/// How much a built-in filter reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Definite failures only (bad passwords, refused users, probes).
    #[default]
    Normal,
    /// Also scanner behaviour that is not an authentication failure (pre-auth disconnects,
    /// banner and key-exchange garbage, negotiation failures).
    Aggressive,
}

/// Options shared by all built-in filters.
#[derive(Clone, Debug)]
pub struct BuiltinOptions {
    /// Which rule set to use.
    pub mode: Mode,
    /// Time zone of local timestamps (RFC 3164 syslog, nginx/apache error logs).
    pub tz: TimeZone,
}

impl Default for BuiltinOptions {
    /// Normal mode, the system time zone (honours `TZ`, including POSIX strings).
    fn default() -> Self {
        BuiltinOptions {
            mode: Mode::Normal,
            tz: TimeZone::system(),
        }
    }
}

const NAMES: &[&str] = &[
    "sshd",
    "sshd_plain",
    "nginx_access",
    "apache_access",
    "nginx_error",
    "apache_error",
    "kernel_fw",
];

/// Names accepted by [`build_builtin`].
pub fn builtin_names() -> &'static [&'static str] {
    NAMES
}

/// Builds the built-in filter `name` (one of [`builtin_names`]).
pub fn build_builtin(name: &str, opts: &BuiltinOptions) -> Result<Box<dyn Filter>, FilterError> {
    Ok(match name {
        "sshd" => Box::new(crate::sshd::Sshd::new(opts)),
        "sshd_plain" => Box::new(crate::sshd::Sshd::new_plain(opts)),
        "nginx_access" | "apache_access" => Box::new(crate::web::Access::new(name, opts)),
        "nginx_error" => Box::new(crate::web::NginxError::new(opts)),
        "apache_error" => Box::new(crate::web::ApacheError::new(opts)),
        "kernel_fw" => Box::new(crate::kernel::KernelFw::new(opts)),
        _ => return Err(FilterError::UnknownBuiltin(name.to_string())),
    })
}

/// Option keys [`build_builtin_with`] accepts besides `mode`, per filter.
pub fn builtin_option_keys(name: &str) -> &'static [&'static str] {
    match name {
        "nginx_access" | "apache_access" => &["mode", "log_format", "trusted_proxies"],
        _ => &["mode"],
    }
}

/// Builds the built-in filter `name` with a jail's options: `log_format` (a preset —
/// `combined`, `common`, `vhost_combined`, `combined_xff` — or an nginx `log_format` /
/// Apache `LogFormat` string) and `trusted_proxies` (CIDRs; needs a format that logs
/// `X-Forwarded-For`) for the access filters. `mode` is read by the caller into `opts`.
pub fn build_builtin_with(
    name: &str,
    opts: &BuiltinOptions,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<Box<dyn Filter>, FilterError> {
    let allowed = builtin_option_keys(name);
    if let Some(k) = options.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(FilterError::Option(format!(
            "{name}: unknown option {k:?} (allowed: {})",
            allowed.join(", ")
        )));
    }
    if !matches!(name, "nginx_access" | "apache_access") {
        return build_builtin(name, opts);
    }
    let format = match options.get("log_format") {
        Some(f) => crate::logformat::LogFormat::preset(f)
            .map_err(|e| FilterError::Option(format!("{name}: {e}")))?,
        None => None,
    };
    let trusted = match options.get("trusted_proxies") {
        Some(t) => {
            if !format.as_ref().is_some_and(|f| f.has_xff()) {
                return Err(FilterError::Option(format!(
                    "{name}: trusted_proxies needs a log_format that logs X-Forwarded-For (e.g. \"combined_xff\")"
                )));
            }
            Some(
                crate::logformat::parse_trusted(t)
                    .map_err(|e| FilterError::Option(format!("{name}: {e}")))?,
            )
        }
        None => None,
    };
    Ok(Box::new(crate::web::Access::with_format(
        name, opts, format, trusted,
    )))
}

/// Longest user name kept in an event, in bytes.
pub(crate) const USER_MAX: usize = 128;
/// Longest other captured field kept in an event, in bytes.
pub(crate) const FIELD_MAX: usize = 256;

/// Name and rule table of one filter, and the event constructor.
pub(crate) struct Base {
    pub name: Arc<str>,
    pub rules: Vec<Arc<str>>,
    field_names: Vec<Arc<str>>,
}

impl Base {
    pub fn new(name: &str, rules: &[&str], fields: &[&str]) -> Self {
        Base {
            name: Arc::from(name),
            rules: rules.iter().map(|r| Arc::from(*r)).collect(),
            field_names: fields.iter().map(|f| Arc::from(*f)).collect(),
        }
    }

    /// Builds one event (only ever called for matching lines).
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &self,
        line: &[u8],
        time: Timestamp,
        ip: IpAddr,
        rule: usize,
        failure: bool,
        user: Option<&[u8]>,
        fields: &[(usize, &[u8])],
    ) -> Event {
        Event {
            time,
            ip,
            filter: self.name.clone(),
            rule: self.rules[rule].clone(),
            failure,
            user: user.map(|u| crate::scan::capture(u, USER_MAX)),
            fields: fields
                .iter()
                .map(|&(i, v)| {
                    (
                        self.field_names[i].clone(),
                        crate::scan::capture(v, FIELD_MAX),
                    )
                })
                .collect(),
            evidence: crate::scan::evidence(line),
        }
    }
}
