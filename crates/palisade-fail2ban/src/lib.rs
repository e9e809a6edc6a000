//! fail2ban filter files for Palisade.
//!
//! Loads fail2ban `filter.d/*.conf` files — includes, `.local` overrides, `%(name)s`
//! interpolation, `[Init]` options, `<tag>` substitution — and applies them with fail2ban's
//! own semantics: date detection and removal, `prefregex`/`<F-CONTENT>`, failregexes and
//! ignoreregexes, the `maxlines` buffer and the `<F-MLFID>` connection cache. Python regex
//! syntax is translated; conditionals are rewritten into alternatives so that nearly all
//! patterns run on the `regex` crate, the rest (lookaround) on `fancy-regex`.
//!
//! * [`FilterDef::load`] loads and compiles a filter; [`Matcher`] runs it over a stream and
//!   returns fail2ban's raw results ([`RawMatch`]: host verbatim, fields, time).
//! * [`Fail2banFilter`] implements [`palisade_filter::Filter`] on top; in journal mode it
//!   shows filters fail2ban's `host ident[pid]: message` line ([`journal_line`]).
//!
//! Agreement with fail2ban is checked against fail2ban's own annotated corpus
//! (`tests/corpus.rs`), read at test time from the Debian package; nothing of fail2ban's
//! GPL filters, logs or code is part of this crate.

#![warn(missing_docs)]

pub mod adapter;
pub mod config;
pub mod date;
pub mod engine;
pub mod error;
pub mod filter;
pub mod import;
pub mod ini;
pub mod journal;
pub mod name;
pub mod pyre;
pub mod record;
pub mod tags;

pub use adapter::Fail2banFilter;
pub use error::LoadError;
pub use filter::{FilterDef, LoadOptions, MatchOptions, Matcher, RawMatch};
pub use journal::journal_line;
