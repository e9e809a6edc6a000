//! Detection and policy, on event time.
//!
//! * [`Detector`]: per-key failure counting with fail2ban's exact window semantics
//!   (`max_retry` failures within `find_time`), bounded state.
//! * [`correlate::Correlator`]: fleet jails on a fleet server — failures of one offender
//!   counted over every agent's events, with a minimum number of distinct hosts.
//! * [`Engine`]: all jails of one host: detectors, the allowlist, escalation for repeat
//!   offenders, the recidive jail, the table of bans in force, manual ban/unban, dry-run.
//!
//! Everything here is synchronous and takes time as an argument, so replaying a file
//! reproduces the decisions taken live.

#![warn(missing_docs)]

pub mod correlate;
pub mod detector;
pub mod engine;

pub use correlate::{Correlator, FleetDetection, FleetJailSpec, FleetJailStats};
pub use detector::{Detection, Detector, DetectorStats, BYTES_PER_KEY};
pub use engine::{
    fmt_duration, Action, Engine, EngineConfig, EngineStats, Escalation, JailParams,
    RecidiveParams, UnbanReason,
};
