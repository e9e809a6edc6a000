//! The pipeline: sources → filters → engine → responders, with the store and the control
//! socket off the critical path. Also the offline runs (`check`, `replay`) that use the very
//! same filters and engine.
//!
//! Threads, not async: each source runs on its own thread and calls its jails' filters
//! inline (no allocation for non-matching lines); matched events cross one bounded channel
//! in batches to the engine thread; decisions go to the responder thread (the ban lands
//! first) and to the store writer thread.

#![warn(missing_docs)]

pub mod build;
pub mod control;
pub mod daemon;
pub mod maintenance;
pub mod manual;
pub mod offline;

pub use build::{
    build_engine_config, build_filter, build_responder, open_store, store_url, time_zone,
    BuildError,
};
pub use daemon::{ControlHandle, Daemon, DaemonOptions, Stats, Supervise, Supervisor};
pub use palisade_core::{Fanout, Observer};
