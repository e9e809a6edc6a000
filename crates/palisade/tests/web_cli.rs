//! `palisade check` with access-log options (`--filter-option log_format=…`,
//! `trusted_proxies=…`), and the connection's `users` set in `check --filter-file --json`.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_palisade"));
    c.env("TZ", "UTC");
    c
}

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn check_access_log_behind_a_cdn() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        concat!(
            r#"10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8" "6.6.6.6, 198.51.100.20""#,
            "\n",
            r#"198.51.100.21 - - [10/Oct/2024:13:55:37 +0000] "GET /.git/config HTTP/1.1" 404 153 "-" "curl/8" "10.0.0.9""#,
            "\n",
            r#"10.0.0.1 - - [10/Oct/2024:13:55:38 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8" "-""#,
            "\n",
        ),
    )
    .unwrap();
    let o = bin()
        .arg("check")
        .arg(&log)
        .args(["--filter", "nginx_access", "--json"])
        .args(["--filter-option", "log_format=combined_xff"])
        .args(["--filter-option", "trusted_proxies=10.0.0.0/8"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_lines(&o.stdout);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0]["ip"], "198.51.100.20", "right-most untrusted entry");
    assert_eq!(
        v[1]["ip"], "198.51.100.21",
        "an untrusted peer's header is not read"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 ignored"));

    // A bad option is a clear error naming it.
    let o = bin()
        .arg("check")
        .arg(&log)
        .args(["--filter", "nginx_access"])
        .args(["--filter-option", "trusted_proxies=10.0.0.0/8"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("X-Forwarded-For"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn check_filter_file_reports_the_connections_users() {
    let sshd = Path::new("/etc/fail2ban/filter.d/sshd.conf");
    if !sshd.is_file() {
        if std::env::var_os("PALISADE_REQUIRE_F2B").is_some() {
            panic!("fail2ban is not installed");
        }
        eprintln!("SKIP: fail2ban is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(
        &log,
        "Mar  7 18:53:22 bar sshd[1558]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=root rhost=192.0.2.114\n\
         Mar  7 18:53:23 bar sshd[1558]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=sudoer rhost=192.0.2.114\n",
    )
    .unwrap();
    let o = bin()
        .arg("check")
        .arg(&log)
        .args([
            "--filter-file",
            "/etc/fail2ban/filter.d/sshd.conf",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_lines(&o.stdout);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["ip"], "192.0.2.114");
    assert_eq!(
        v[0]["users"],
        serde_json::json!(["root", "sudoer"]),
        "{v:?}"
    );
}
