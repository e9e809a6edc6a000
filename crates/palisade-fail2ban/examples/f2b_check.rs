//! Runs a fail2ban filter file over a log, like `fail2ban-regex`.
//!
//! ```text
//! cargo run --release -p palisade-fail2ban --example f2b_check -- \
//!     /etc/fail2ban/filter.d/sshd.conf /var/log/auth.log [--out hits.tsv] \
//!     [--opt mode=aggressive]... [--check-all] [--no-prefilter] [--journal]
//! ```
//!
//! Counts failures (results that are neither "no failure" nor pending) and prints them with
//! lines/s to stderr; `--out` writes `line_no<TAB>host` per failure.

use palisade_core::Timestamp;
use palisade_fail2ban::date::TimeCx;
use palisade_fail2ban::filter::{FilterDef, LoadOptions, MatchOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut pos: Vec<String> = Vec::new();
    let mut out_path: Option<PathBuf> = None;
    let mut init = Vec::new();
    let mut mo = MatchOptions::default();
    let mut split = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out_path = args.next().map(PathBuf::from),
            "--opt" => {
                let kv = args.next().expect("--opt KEY=VALUE");
                let (k, v) = kv.split_once('=').expect("--opt KEY=VALUE");
                init.push((k.to_string(), v.to_string()));
            }
            "--check-all" => mo.check_all = true,
            "--no-prefilter" => mo.prefilter = false,
            "--journal" => mo.journal = true,
            "--split" => split = true,
            _ => pos.push(a),
        }
    }
    if pos.len() != 2 {
        eprintln!("usage: f2b_check FILTER.conf LOG [--out FILE] [--opt K=V]... [--check-all] [--no-prefilter] [--journal]");
        std::process::exit(2);
    }
    let t0 = Instant::now();
    let def = match FilterDef::load(
        pos[0].as_ref(),
        &LoadOptions {
            init,
            ..LoadOptions::default()
        },
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let load_time = t0.elapsed();
    if std::env::var_os("F2B_EXPLAIN").is_some() {
        for (i, (src, fancy, lits)) in def.rule_info().iter().enumerate() {
            eprintln!("failregex[{i}] fancy={fancy} literals={lits:?}\n    {src}");
        }
    }
    let mut m = def.matcher(mo.clone());
    let cx = TimeCx {
        now: Timestamp::from_jiff(jiff::Timestamp::now()),
        tz: jiff::tz::TimeZone::system(),
        default_offset_min: None,
    };
    let f = std::fs::File::open(&pos[1]).expect("open log");
    let mut rd = BufReader::with_capacity(1 << 20, f);
    let mut w = out_path.map(|p| BufWriter::new(std::fs::File::create(p).expect("create out")));
    let mut raw = Vec::with_capacity(4096);
    let mut res = Vec::new();
    let (mut failures, mut nofail) = (0u64, 0u64);
    let t1 = Instant::now();
    let mut second = def.matcher(mo.clone());
    let mut on_result = |no: u64, res: &[palisade_fail2ban::RawMatch]| {
        for r in res {
            if r.nofail || r.fid.is_none() {
                nofail += 1;
                continue;
            }
            failures += 1;
            if let Some(w) = w.as_mut() {
                writeln!(w, "{no}\t{}", r.fid.as_deref().unwrap_or("")).expect("write");
            }
        }
    };
    let journal = mo.journal;
    let now = cx.now;
    let feed = move |f: &mut dyn FnMut(u64, &str, Option<Timestamp>)| {
        let mut n = 0u64;
        loop {
            raw.clear();
            if rd.read_until(b'\n', &mut raw).expect("read") == 0 {
                break;
            }
            n += 1;
            let mut l: &[u8] = &raw;
            while let [rest @ .., b'\n' | b'\r'] = l {
                l = rest;
            }
            let s = String::from_utf8_lossy(l);
            f(n, &s, journal.then_some(now));
        }
        n
    };
    let lines = if split && m.can_split() {
        palisade_fail2ban::filter::run_split(&mut m, &mut second, &cx, feed, |no, _, r| {
            on_result(no, r)
        })
    } else {
        let mut feed = feed;
        feed(&mut |no, s, given| {
            res.clear();
            m.process_line(s, given, &cx, &mut res);
            on_result(no, &res);
        })
    };
    let el = t1.elapsed().as_secs_f64();
    if let Some(mut w) = w {
        w.flush().expect("flush");
    }
    let st = m.stats().plus(second.stats());
    eprintln!(
        "filter {} loaded in {:.1} ms; {lines} lines, {failures} failures, {nofail} no-failure/pending results, {} lines prefiltered, memo {}/{}; {:.3} s, {:.0} lines/s",
        def.name(),
        load_time.as_secs_f64() * 1e3,
        st.prefiltered,
        st.memo_hits,
        st.memo_hits + st.memo_misses,
        el,
        lines as f64 / el
    );
}
