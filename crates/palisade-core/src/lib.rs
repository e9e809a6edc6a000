//! Palisade's vocabulary: the small types every other crate speaks.
//!
//! No I/O and no async here. See `ARCHITECTURE.md` at the repository root for the data flow.

pub mod allowlist;
pub mod decision;
pub mod event;
pub mod journal;
pub mod net;
pub mod observe;
pub mod text;
pub mod time;

pub use allowlist::{Allowlist, AllowlistError};
pub use decision::{Decision, Origin};
pub use event::Event;
pub use journal::JournalFields;
pub use net::{aggregate, canonical_ip, canonical_net, is_bannable, parse_ip_bytes, target_of};
pub use observe::{Fanout, Observer, UnbanReason};
pub use text::{escape_untrusted, log_directives, redact_url};
pub use time::{Clock, FixedClock, SystemClock, Timestamp, MAX_DURATION};
