//! Helpers shared by the binary's integration tests (each test file uses some of them).
#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// Polls `f` until it holds; fails the test after `secs` naming `what`. Returns the wait.
pub fn wait_for(what: &str, secs: f64, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs_f64(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

/// Waits for `c` to exit, killing it after `secs` (then `None`).
pub fn wait_child(c: &mut Child, secs: f64) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if t.elapsed() > Duration::from_secs_f64(secs) {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends signal `sig` to `pid` with kill(1) (argv, no shell, no libc dependency).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("/bin/kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("running /bin/kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Now as a syslog (RFC 3164) date in UTC.
pub fn syslog_now() -> String {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    now.strftime("%b %e %H:%M:%S").to_string()
}

/// An sshd failed-password line of now.
pub fn sshd_failed(ip: &str, user: &str) -> String {
    format!(
        "{} web1 sshd[4242]: Failed password for invalid user {user} from {ip} port 50522 ssh2",
        syslog_now()
    )
}

/// Standard output and error as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
