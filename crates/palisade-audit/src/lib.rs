//! Cloud audit: read an AWS account's configuration with a small signed client, run security
//! rules over it, and report each finding once per change (`new`, `changed` with the diff,
//! `resolved`) against the state of the previous run.

pub mod client;
pub mod collect;
pub mod config;
pub mod creds;
pub mod error;
pub mod output;
pub mod persist;
pub mod rules;
pub mod run;
pub mod sigv4;
pub mod state;
pub mod xml;

pub use config::AuditConfig;
pub use error::AuditError;
