//! fail2ban compatibility commands: `check --filter-file` (like `fail2ban-regex`) and
//! `import fail2ban` (jail configuration → Palisade TOML).

use anyhow::{Context, Result};
use palisade_core::Timestamp;
use palisade_fail2ban::date::TimeCx;
use palisade_fail2ban::filter::{FilterDef, LoadOptions, MatchOptions, RawMatch};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Parses repeated `--filter-option KEY=VALUE`.
fn parse_options(opts: &[String]) -> Result<Vec<(String, String)>> {
    opts.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--filter-option {kv:?}: expected KEY=VALUE"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `palisade check LOG --filter-file F [--filter-option K=V]... [--json]`.
///
/// Runs the filter with fail2ban's server semantics (`checkAllRegex = False`: the first
/// failregex that matches a line wins, as the daemon counts). `fail2ban-regex` tries every
/// failregex by default (its `--no-check-all` gives the server behaviour); on filters where a
/// line matches at most one failregex both report the same lines. Each failure is reported at
/// the line where fail2ban reports it (multi-line and `<F-MLFID>` state included) with the
/// host exactly as captured (`192.030.0.6`, `example.com`): nothing is resolved or
/// normalised, so what fail2ban would look up in DNS is visible.
pub fn check(
    log: &str,
    filter_file: &Path,
    options: &[String],
    json: bool,
    now: Timestamp,
    max_line: usize,
) -> Result<ExitCode> {
    let init = parse_options(options)?;
    let journal = init.iter().any(|(k, v)| k == "logtype" && v == "journal");
    let t0 = Instant::now();
    let def = FilterDef::load(
        filter_file,
        &LoadOptions {
            init,
            ..LoadOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let load_secs = t0.elapsed().as_secs_f64();
    let mut m = def.matcher(MatchOptions {
        journal,
        ..MatchOptions::default()
    });
    let cx = TimeCx {
        now,
        tz: jiff::tz::TimeZone::system(),
        default_offset_min: None,
    };
    let rules = def.failregex_count();
    let mut hits = vec![0u64; rules];
    let (mut matched, mut nofail_lines, mut failures) = (0u64, 0u64, 0u64);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_err: Option<std::io::Error> = None;
    let start = Instant::now();
    // one failure line of output per result, in line order
    let mut sink = |line_no: u64, source_time: Option<Timestamp>, res: &[RawMatch]| {
        let (mut fail, mut nof) = (false, false);
        for r in res {
            let Some(fid) = r.fid.as_deref() else {
                continue; // waiting for its address (multi-line)
            };
            if r.nofail {
                nof = true;
            } else {
                fail = true;
                failures += 1;
                if let Some(h) = hits.get_mut(r.rule) {
                    *h += 1;
                }
            }
            if !json {
                continue;
            }
            let mut o = serde_json::Map::new();
            o.insert("line".into(), line_no.into());
            let t = r.time.or(source_time).unwrap_or(now);
            o.insert("time".into(), t.to_string().into());
            o.insert("ip".into(), r.host.as_deref().unwrap_or(fid).into());
            if r.host.is_none() || r.field("ip").is_some() {
                // the failure id is not the address (`<F-ID>`): show both
                o.insert("fid".into(), fid.into());
            }
            o.insert("rule".into(), format!("failregex[{}]", r.rule).into());
            if r.nofail {
                o.insert("failure".into(), false.into());
            }
            if let Some(u) = r.field("user") {
                o.insert("user".into(), u.into());
            }
            // `ip` is printed above as the address; `users` (the connection's sorted set)
            // as a list.
            for (k, v) in palisade_fail2ban::adapter::reported_fields(r, true) {
                if k == "users" {
                    o.insert(k.into(), r.users.iter().map(|u| u.as_str()).collect());
                } else {
                    o.insert(k.into(), v.into());
                }
            }
            let w = serde_json::to_writer(&mut out, &o).map_err(std::io::Error::from);
            if let Err(e) = w.and_then(|_| out.write_all(b"\n")) {
                write_err.get_or_insert(e);
            }
        }
        if fail {
            matched += 1;
        } else if nof {
            nofail_lines += 1;
        }
    };
    let spec = palisade_pipeline::offline::spec_for(log);
    // the log's lines as text, with the time journald gave them
    let feed = |f: &mut dyn FnMut(u64, &str, Option<Timestamp>)| {
        palisade_pipeline::offline::for_each_line(
            &spec,
            max_line,
            now,
            &mut |_| {},
            |no, line, ctx| {
                let given = journal.then(|| ctx.source_time.unwrap_or(now));
                match simdutf8::basic::from_utf8(line) {
                    Ok(s) => f(no, s, given),
                    // not UTF-8: read with replacement characters
                    Err(_) => f(no, &String::from_utf8_lossy(line), given),
                }
            },
        )
    };
    // Two stages on two threads when the filter allows it (same results, same order).
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let mut second = def.matcher(MatchOptions {
        journal,
        ..MatchOptions::default()
    });
    let (lines, stats) = if parallel && m.can_split() {
        palisade_fail2ban::filter::run_split(&mut m, &mut second, &cx, feed, |no, _, res| {
            // journal lines carry their time in the results already
            sink(no, None, res)
        })?
    } else {
        let mut res = Vec::new();
        feed(&mut |no, text, given| {
            res.clear();
            m.process_line(text, given, &cx, &mut res);
            sink(no, given, &res);
        })?
    };
    let secs = start.elapsed().as_secs_f64();
    out.flush()?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    let ms = m.stats().plus(second.stats());
    let missed = lines.saturating_sub(matched + nofail_lines + ms.ignored);
    let mut s = format!(
        "Filter: {} ({} failregex, loaded in {:.0} ms)\n",
        def.path().display(),
        rules,
        load_secs * 1e3
    );
    s.push_str(&format!(
        "Lines: {lines} read, {matched} matched ({failures} failures), {nofail_lines} no-failure only, {} ignored (ignoreregex), {missed} missed, {} cut (over {max_line} bytes)\nRules:\n",
        ms.ignored, stats.cut_lines
    ));
    for (i, n) in hits.iter().enumerate() {
        s.push_str(&format!("  {:<28} {n}\n", format!("failregex[{i}]")));
    }
    s.push_str(&format!(
        "Time: {secs:.3} s ({:.0} lines/s)\n",
        lines as f64 / secs.max(1e-9)
    ));
    if json {
        eprint!("{s}");
    } else {
        print!("{s}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `palisade import fail2ban [DIR] [--output FILE]`: writes the Palisade equivalent of the
/// enabled fail2ban jails; settings without an equivalent are listed in comments at the top
/// of the output (and counted on standard error).
pub fn import(dir: &Path, output: Option<&Path>) -> Result<ExitCode> {
    let imp = palisade_fail2ban::import::import(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    match output {
        Some(p) => {
            std::fs::write(p, &imp.toml).with_context(|| format!("writing {}", p.display()))?
        }
        None => print!("{}", imp.toml),
    }
    eprintln!(
        "imported {} jail(s) ({}); {} setting(s) could not be mapped (listed at the top{})",
        imp.jails.len(),
        imp.jails.join(", "),
        imp.unmapped.len(),
        output.map_or(String::new(), |p| format!(" of {}", p.display()))
    );
    Ok(ExitCode::SUCCESS)
}

/// Where `palisade run` takes its configuration from: a Palisade file, fail2ban's jails, or
/// both (the file's settings, plus the fail2ban jails and their responders and allowlist).
pub struct RunConfig {
    config: Option<PathBuf>,
    fail2ban: Option<PathBuf>,
}

impl RunConfig {
    /// `--config` and `--fail2ban` as given. Without `--config`, the default file is used
    /// when it exists or when there is no `--fail2ban`.
    pub fn new(config: Option<PathBuf>, fail2ban: Option<PathBuf>) -> Self {
        let config = match (config, &fail2ban) {
            (Some(c), _) => Some(c),
            (None, None) => Some(PathBuf::from(super::DEFAULT_CONFIG)),
            (None, Some(_)) => Some(PathBuf::from(super::DEFAULT_CONFIG)).filter(|p| p.exists()),
        };
        RunConfig { config, fail2ban }
    }

    /// For logs.
    pub fn describe(&self) -> String {
        match (&self.config, &self.fail2ban) {
            (Some(c), Some(f)) => format!("{} + fail2ban {}", c.display(), f.display()),
            (Some(c), None) => c.display().to_string(),
            (None, Some(f)) => format!("fail2ban {}", f.display()),
            (None, None) => String::new(),
        }
    }

    /// Loads (start and every reload).
    pub fn load(&self) -> Result<palisade_config::Config> {
        let base = self.config.as_deref().map(super::load_config).transpose()?;
        let Some(dir) = &self.fail2ban else {
            return base.context("no configuration");
        };
        let imp = palisade_fail2ban::import::import(dir)
            .map_err(|e| anyhow::anyhow!("fail2ban configuration {}: {e}", dir.display()))?;
        for u in &imp.unmapped {
            tracing::warn!(setting = %u, "fail2ban setting not mapped");
        }
        let virt = dir.join("jail.conf");
        let imported =
            palisade_config::Config::parse(&imp.toml, &virt, palisade_filter::builtin_names())
                .map_err(|e| anyhow::anyhow!("fail2ban jails of {}: {e}", dir.display()))?;
        tracing::info!(jails = ?imp.jails, "fail2ban jails imported");
        let Some(mut cfg) = base else {
            return Ok(imported);
        };
        merge_imported(&mut cfg, imported)?;
        Ok(cfg)
    }
}

/// Adds fail2ban's jails, their responders and allowlist to a Palisade configuration. A name
/// used by both is an error (rename the Palisade jail or responder).
fn merge_imported(
    cfg: &mut palisade_config::Config,
    imported: palisade_config::Config,
) -> Result<()> {
    for r in imported.responders {
        if cfg
            .responders
            .iter()
            .any(|x| x.name.get_ref() == r.name.get_ref())
        {
            anyhow::bail!(
                "responder {:?} is defined by the configuration and by fail2ban's jails",
                r.name.get_ref()
            );
        }
        cfg.responders.push(r);
    }
    for j in imported.jails {
        if cfg
            .jails
            .iter()
            .any(|x| x.name.get_ref() == j.name.get_ref())
        {
            anyhow::bail!(
                "jail {:?} is defined by the configuration and by fail2ban's jails",
                j.name.get_ref()
            );
        }
        cfg.jails.push(j);
    }
    for a in imported.allowlist.parsed {
        if !cfg.allowlist.parsed.contains(&a) {
            cfg.allowlist.parsed.push(a);
        }
    }
    Ok(())
}
