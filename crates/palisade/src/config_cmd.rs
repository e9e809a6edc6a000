//! `palisade config check`, and the check of the configuration at the start of `palisade run`:
//! every problem of a configuration in one pass, the file's own (palisade-config) and those
//! found by building what it describes (the filters of its jails, fail2ban filter files at
//! their own file:line, `[audit]`), sorted by place, with the count at the end.

use anyhow::Result;
use palisade_config::{sort_problems, Config, ConfigError, Problem};
use std::path::Path;
use std::process::ExitCode;

/// Reads and checks `path` entirely. The configuration is `None` when the file cannot be read
/// or is not TOML.
pub fn check_all(path: &Path) -> (Option<Config>, Vec<Problem>) {
    let (cfg, mut problems) = Config::load_all(path, palisade_filter::builtin_names());
    if let Some(cfg) = &cfg {
        problems.extend(build_problems(cfg, path));
    }
    sort_problems(&mut problems, path);
    (cfg, problems)
}

/// The configuration `palisade run` starts with. When it has problems, the error lists all of
/// them, those of the filters included. (A filter that alone cannot be built does not stop
/// `run`: that jail is skipped with an error in the log, see palisade-pipeline.)
pub fn load_for_run(path: &Path) -> Result<Config> {
    let (cfg, problems) = Config::load_all(path, palisade_filter::builtin_names());
    match cfg {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => {
            let (_, problems) = check_all(path);
            Err(anyhow::anyhow!("{}", ConfigError { problems }))
        }
    }
}

/// `palisade config check FILE`: 0 when there is no problem (warnings allowed), 1 otherwise.
pub fn config_check(file: &Path) -> Result<ExitCode> {
    let (cfg, problems) = check_all(file);
    if let Some(cfg) = &cfg {
        for w in crate::config_warnings(cfg) {
            eprintln!("{}: warning: {w}", file.display());
        }
    }
    match cfg {
        Some(cfg) if problems.is_empty() => {
            println!(
                "{}: OK ({} jails, {} enabled)",
                file.display(),
                cfg.jails.len(),
                cfg.jails.iter().filter(|j| j.enabled).count()
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint!("{}", ConfigError { problems });
            Ok(ExitCode::from(1))
        }
    }
}

/// What building the configuration's parts finds wrong, beyond the file's own checks: each
/// enabled jail's filter (built-in options, fail2ban filter files) and `[audit]`. Jails whose
/// filter the file's checks already refused (unknown name, missing file) are not built again.
fn build_problems(cfg: &Config, path: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    let at_file = |message: String| Problem {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        message,
    };
    let tz = match palisade_pipeline::time_zone(cfg) {
        Ok(tz) => tz,
        Err(e) => {
            problems.push(at_file(e.to_string()));
            jiff::tz::TimeZone::UTC
        }
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let names = palisade_filter::builtin_names();
    for j in cfg.jails.iter().filter(|j| j.enabled) {
        let refused = match (&j.filter, &j.filter_file) {
            (Some(f), None) => !names.contains(&f.get_ref().as_str()),
            (None, Some(f)) => !cfg.resolve(f.get_ref()).is_file(),
            _ => true,
        };
        if refused {
            continue;
        }
        match palisade_pipeline::build_filter(cfg, j, &tz) {
            Ok(_) => {}
            Err(palisade_pipeline::BuildError::FilterFile {
                jail,
                file,
                line,
                message,
                ..
            }) => problems.push(Problem {
                file,
                line: line.unwrap_or(0),
                col: line.map_or(0, |_| 1),
                message: format!("jail {jail:?}: {message}"),
            }),
            Err(e) => {
                // A built-in filter's options: placed at the jail's `filter`.
                let off = j
                    .filter
                    .as_ref()
                    .map_or(j.name.span().start, |f| f.span().start);
                problems.push(Problem::at(path, &text, off, e.to_string()));
            }
        }
    }
    #[cfg(feature = "audit")]
    if let Err(e) = crate::audit_cmd::check_config(cfg) {
        // Its message starts with `[audit]`; placed at that header.
        problems.push(match text.find("[audit]") {
            Some(off) => Problem::at(path, &text, off, e.to_string()),
            None => at_file(e.to_string()),
        });
    }
    problems
}
