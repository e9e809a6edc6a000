//! Detection and policy, on event time.
//!
//! * [`Detector`]: per-key failure counting with fail2ban's exact window semantics
//!   (`max_retry` failures within `find_time`), bounded state.
//! * [`Engine`]: all jails of one host: detectors, the allowlist, escalation for repeat
//!   offenders, the recidive jail, the table of bans in force, manual ban/unban, dry-run.
//!
//! Everything here is synchronous and takes time as an argument, so replaying a file
//! reproduces the decisions taken live.

#![warn(missing_docs)]

pub mod detector;
pub mod engine;

pub use detector::{Detection, Detector, DetectorStats, BYTES_PER_KEY};
pub use engine::{
    fmt_duration, Action, Engine, EngineConfig, EngineStats, Escalation, JailParams,
    RecidiveParams, UnbanReason,
};
