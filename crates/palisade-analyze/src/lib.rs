//! Offline access-log analysis (`palisade analyze`): scoring addresses by suspicious hits,
//! threat levels, reports as table/JSON/CSV/HTML (with inline SVG charts, [`svg`]) and
//! firewall scripts (iptables, nft, ipset) for the addresses proposed for blocking.
//!
//! Synchronous and independent of the daemon: it depends on no pipeline crate.

#![warn(missing_docs)]

pub mod analyze;
pub mod geo;
pub mod render;
pub mod svg;
