//! Typed messages that cross a process boundary.
//!
//! - [`control`]: requests to the running daemon and its typed replies (the control socket,
//!   the HTTP API's link to the daemon), with a typed [`ControlError`].
//! - [`status`]: the [`StatusReport`] that `palisade status`, `/metrics`, the HTTP API and the
//!   dashboard all read. Fields are struct fields, never looked up by string key, so a renamed
//!   counter fails to compile instead of silently exporting 0.
//! - [`fleet`]: fleet mode's versioned messages ([`Envelope`], agent → server
//!   [`fleet::AgentMsg`], server → agent [`fleet::ServerMsg`]) and their bounded decoders.
//! - [`fleet_analyze`]: remote access-log analysis (queries, rows, the admin socket's lines).
//!
//! This crate depends on `palisade-core` only, so every process-facing crate (daemon, server,
//! binary, later the fleet agent) can speak it without pulling in the pipeline.

#![warn(missing_docs)]

pub mod control;
pub mod fleet;
pub mod fleet_analyze;
pub mod status;

pub use control::{ControlError, Reply, Request, Response};
pub use fleet::{accepts, Envelope, Hello, PROTOCOL_VERSION};
pub use status::{
    Counters, EngineCounters, JailStatus, Lag, ResponderHealth, SourceState, SourceStatus,
    StatusReport, StoreHealth,
};
