//! The I/O half of loading a configuration: the files it names. [`Config::parse`] (and the
//! validation in it) reads nothing; [`Config::load`] runs this afterwards, so every command,
//! the daemon's start and every reload see the files as they are at that moment.

use crate::{Config, Locator, Problem};

/// Reads the allowlist files (their entries are added to `allowlist.parsed`, each bad line
/// reported at its file:line) and checks that every jail's `filter_file` exists.
pub(crate) fn check(cfg: &mut Config, loc: &Locator<'_>, problems: &mut Vec<Problem>) {
    for f in cfg.allowlist.files.clone() {
        let path = cfg.resolve(f.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(text) => match palisade_core::Allowlist::parse_text(&text) {
                Ok(v) => cfg.allowlist.parsed.extend(v),
                Err(errs) => {
                    for e in errs {
                        problems.push(Problem {
                            file: path.clone(),
                            line: e.line,
                            col: 1,
                            message: format!("{:?} is not an IP address or CIDR network", e.entry),
                        });
                    }
                }
            },
            Err(e) => problems.push(loc.span(
                &f,
                format!("cannot read allowlist file {}: {e}", path.display()),
            )),
        }
    }
    for j in &cfg.jails {
        if let (None, Some(f)) = (&j.filter, &j.filter_file) {
            let p = cfg.resolve(f.get_ref());
            if !p.is_file() {
                problems.push(loc.span(
                    f,
                    format!(
                        "jail {:?}: filter_file {} does not exist",
                        j.name.get_ref(),
                        p.display()
                    ),
                ));
            }
        }
    }
}
