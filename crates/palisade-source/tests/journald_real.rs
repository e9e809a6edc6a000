//! Best effort against the real journal: skipped when there is none or no `logger`.

use palisade_source::{run, LineMeta, SourceOptions, SourceSpec};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn journal_available() -> bool {
    Command::new("journalctl")
        .args(["-n", "1", "-o", "json", "--no-pager", "-q"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"{"))
}

#[test]
fn real_journal_delivers_a_logged_message() {
    if !journal_available() {
        return palisade_testkit::require_or_skip(
            "JOURNAL",
            "no readable systemd journal on this machine",
        );
    }
    let marker = format!("palisade-source-test-{}", std::process::id());
    let spec = SourceSpec::Journald { matches: vec![] };
    let opts = SourceOptions {
        poll: Duration::from_millis(20),
        ..SourceOptions::default()
    };
    let seen = Arc::new(Mutex::new(None::<(Option<String>, bool)>));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2, marker2) = (seen.clone(), stop.clone(), marker.clone());
    let h = std::thread::spawn(move || {
        let mut sink = |line: &[u8], meta: &LineMeta<'_>| {
            if line.windows(marker2.len()).any(|w| w == marker2.as_bytes()) {
                *seen2.lock().unwrap() = Some((
                    meta.journal.and_then(|j| j.ident().map(str::to_string)),
                    meta.time.is_some(),
                ));
            }
        };
        run(&spec, &opts, &mut sink, &stop2)
    });
    // journalctl needs a moment to start following; log until seen.
    let t = Instant::now();
    while seen.lock().unwrap().is_none() && t.elapsed() < Duration::from_secs(5) {
        if Command::new("logger")
            .args(["-t", "palisade-test", &marker])
            .status()
            .is_err()
        {
            palisade_testkit::require_or_skip("JOURNAL", "no logger program");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    if let Some((ident, has_time)) = seen {
        assert_eq!(ident.as_deref(), Some("palisade-test"));
        assert!(has_time);
    } else {
        eprintln!("note: the logged message did not reach the journal (no journald?)");
    }
}
