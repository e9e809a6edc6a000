//! Helpers shared by the binary's integration tests (each test file uses some of them).
#![allow(dead_code, unused_macros)]

pub mod fleet;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
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

/// Exit code, standard output and standard error.
pub fn outcome(o: &Output) -> (Option<i32>, String, String) {
    let (out, err) = text(o);
    (o.status.code(), out, err)
}

/// Standard output and error as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Declares `struct NAME(TestDir)`, dereferencing to its [`TestDir`]: a test file's own
/// set-up on the shared one (`#[macro_use] mod common;`).
macro_rules! test_dir {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        struct $name(common::TestDir);

        impl std::ops::Deref for $name {
            type Target = common::TestDir;
            fn deref(&self) -> &common::TestDir {
                &self.0
            }
        }
    };
}

/// A test's own folder for a daemon: its configuration, state, store, control socket, logs
/// and the marks of the `mark` responder. The set-up the daemon tests share.
pub struct TestDir {
    /// Removed on drop.
    pub dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    /// A new empty folder.
    pub fn new() -> Self {
        TestDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `name` in the folder.
    pub fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The folder, for configuration text.
    pub fn d(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The start of a test configuration: `[general]` with the folder's `state` and
    /// `palisade.sock` and then the lines `general` (`timezone = "UTC"`, `log_level = …`), and
    /// `[store]` on `palisade.db` in the folder.
    pub fn base_config(&self, general: &str) -> String {
        let d = self.d();
        format!(
            "
[general]
state_dir = \"{d}/state\"
socket = \"{d}/palisade.sock\"
{general}

[store]
url = \"sqlite:{d}/palisade.db\"
"
        )
    }

    /// `[[responder]] mark`: a command responder that creates `banned-<ip>` in the folder on a
    /// ban and removes it on unban.
    pub fn mark_responder(&self) -> String {
        let d = self.d();
        format!(
            "
[[responder]]
name = \"mark\"
type = \"command\"
ban = [\"/usr/bin/touch\", \"{d}/banned-{{ip}}\"]
unban = [\"/bin/rm\", \"-f\", \"{d}/banned-{{ip}}\"]
"
        )
    }

    /// `[[jail]] sshd` following `auth.log` in the folder (last: keys written after it are the
    /// jail's).
    pub fn sshd_jail(&self) -> String {
        format!(
            "
[[jail]]
name = \"sshd\"
filter = \"sshd\"
files = [\"{}/auth.log\"]
",
            self.d()
        )
    }

    /// Writes `palisade.toml`; its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.p("palisade.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs the CLI (`TZ=UTC`, no standard input), output captured.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap()
    }

    /// Runs the CLI with `args` then `--config cfg`.
    pub fn cli_config(&self, cfg: &Path, args: &[&str]) -> Output {
        let mut a = args.to_vec();
        a.extend(["--config", cfg.to_str().unwrap()]);
        self.cli(&a)
    }

    /// `[defaults] responders = ["log"]` with its `[[responder]] log`: decisions logged only.
    pub fn log_responder() -> &'static str {
        "
[[responder]]
name = \"log\"
type = \"log\"
"
    }

    /// Starts `palisade run --config cfg` (`TZ=UTC`), standard error into the file `err` in
    /// the folder; returns once the control socket answers.
    pub fn start(&self, cfg: &Path, err: &str) -> Child {
        let child = Command::new(BIN)
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.p(err)).unwrap())
            .spawn()
            .unwrap();
        let sock = self.p("palisade.sock");
        wait_for("control socket", 30.0, || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        child
    }

    /// Stops a daemon with SIGTERM and checks that it exits cleanly (its error log `err`
    /// shown when not).
    pub fn stop(&self, mut child: Child, err: &str) {
        signal(child.id(), "TERM");
        let status = wait_child(&mut child, 30.0).expect("the daemon did not stop");
        assert!(
            status.success(),
            "daemon exit: {status:?}\n{}",
            self.read(err)
        );
    }

    /// Appends `lines` to the file `name` in the folder (created if missing).
    pub fn append(&self, name: &str, lines: &[String]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.p(name))
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f.flush().unwrap();
    }

    /// The text of the file `name` in the folder ("" when missing).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.p(name)).unwrap_or_default()
    }
}
