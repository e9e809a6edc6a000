//! SMTP security against real aiosmtpd servers: STARTTLS required before AUTH (LOGIN and
//! PLAIN), implicit TLS (SMTPS), a refused password, and a certificate that is not trusted.
//! The certificates are made at test time by a throw-away CA (openssl command-line tool) that
//! the mailer trusts through `ca_file`.

mod common;

use common::{make_certs, Smtp, SmtpSecurity};
use palisade_config::Config;
use palisade_notify::mail::Mailer;
use std::path::Path;

const USER: &str = "palisade@example.org";
const PASSWORD: &str = "Tr0ub4dor&3-horse staple";

struct Setup {
    dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: (std::path::PathBuf, std::path::PathBuf),
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    std::fs::write(dir.path().join("smtp-password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(dir.path().join("wrong-password"), "not-the-password\n").unwrap();
    Setup {
        dir,
        ca,
        cert: (cert, key),
    }
}

fn server(s: &Setup, mode: &'static str, exclude: &[&'static str]) -> (Smtp, tempfile::TempDir) {
    let mail_dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start_with(
        mail_dir.path(),
        &SmtpSecurity {
            mode,
            cert: Some(s.cert.clone()),
            login: Some((USER.into(), PASSWORD.into())),
            exclude_mechanisms: exclude.to_vec(),
        },
    );
    (smtp, mail_dir)
}

/// `[notify.email]` for the server; `extra` adds keys (tls, ca_file, password_file).
fn config(dir: &Path, port: u16, extra: &str) -> Config {
    Config::parse(
        &format!(
            "[notify]\n[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nusername = \"{USER}\"\nfrom = \"Palisade <{USER}>\"\nto = [\"ops@example.org\"]\ntimeout = \"10s\"\n{extra}"
        ),
        &dir.join("palisade.toml"),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn mailer(cfg: &Config) -> Result<Mailer, palisade_notify::mail::MailError> {
    Mailer::new(cfg.notify.as_ref().unwrap().email.as_ref().unwrap(), cfg)
}

const TEXT: &str = "Palisade digest\nNew bans: 42\nEvents: 1234 (1200 failures)\n";
const HTML: &str = "<html><body><p><b>42</b> new bans, <b>1234</b> events.</p><svg xmlns=\"http://www.w3.org/2000/svg\"><rect height=\"42\"/></svg></body></html>";

/// The message as the server parsed it: headers, both MIME parts and their figures.
fn check_message(m: &serde_json::Value) {
    assert_eq!(m["tls"], true, "delivered over TLS: {m}");
    assert_eq!(m["login"], USER, "{m}");
    assert_eq!(m["mail_from"], USER);
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.org"]));
    assert_eq!(m["headers"]["from"], format!("Palisade <{USER}>"));
    assert_eq!(m["headers"]["to"], "ops@example.org");
    assert_eq!(
        m["headers"]["subject"],
        "[palisade] digest: 42 new bans, 1234 events"
    );
    assert!(m["headers"]["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(m["type"], "multipart/alternative");
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{m}");
    assert_eq!(parts[0]["type"], "text/plain");
    assert_eq!(
        parts[0]["body"].as_str().unwrap().replace("\r\n", "\n"),
        TEXT
    );
    assert_eq!(parts[1]["type"], "text/html");
    let html = parts[1]["body"].as_str().unwrap();
    assert!(
        html.contains("<b>42</b> new bans, <b>1234</b> events"),
        "{html}"
    );
    assert!(html.contains("<rect height=\"42\"/>"), "{html}");
}

fn send(m: &Mailer) -> Result<(), palisade_notify::mail::MailError> {
    m.send("digest: 42 new bans, 1234 events", TEXT, Some(HTML))
}

#[test]
fn starttls_required_with_auth_plain_and_login() {
    let s = setup();
    for mech in ["PLAIN", "LOGIN"] {
        let other = if mech == "PLAIN" { "LOGIN" } else { "PLAIN" };
        let (smtp, _mail) = server(&s, "starttls", &[other]);
        let cfg = config(
            s.dir.path(),
            smtp.port,
            &format!(
                "tls = \"starttls\"\nca_file = \"{}\"\npassword_file = \"smtp-password\"\n",
                s.ca.display()
            ),
        );
        let m = mailer(&cfg).unwrap();
        assert!(!format!("{m:?} {cfg:?}").contains(PASSWORD));
        send(&m).unwrap_or_else(|e| panic!("{mech}: {e}"));
        let msg = &smtp.parsed(1)[0];
        check_message(msg);
        assert_eq!(msg["mechanism"], mech);
        assert_eq!(smtp.auth_log(), format!("{mech} {USER} ok\n"));
    }
}

#[test]
fn implicit_tls_smtps() {
    let s = setup();
    let (smtp, _mail) = server(&s, "tls", &[]);
    let cfg = config(
        s.dir.path(),
        smtp.port,
        &format!(
            "tls = \"tls\"\nca_file = \"{}\"\npassword_file = \"{}\"\n",
            s.ca.display(),
            s.dir.path().join("smtp-password").display()
        ),
    );
    send(&mailer(&cfg).unwrap()).unwrap();
    check_message(&smtp.parsed(1)[0]);
}

#[test]
fn wrong_password_is_a_clear_error_without_the_password() {
    let s = setup();
    let (smtp, _mail) = server(&s, "starttls", &[]);
    let cfg = config(
        s.dir.path(),
        smtp.port,
        &format!(
            "ca_file = \"{}\"\npassword_file = \"wrong-password\"\n",
            s.ca.display()
        ),
    );
    let err = send(&mailer(&cfg).unwrap()).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "SMTP server 127.0.0.1:{} refused the login of user \"{USER}\"",
            smtp.port
        )) && err.contains("535"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-password") && !err.contains(PASSWORD),
        "{err}"
    );
    assert!(smtp.auth_log().ends_with(&format!("{USER} refused\n")));
    assert!(smtp.messages(0).is_empty(), "nothing delivered");
}

#[test]
fn untrusted_certificate_is_refused() {
    let s = setup();
    let (smtp, _mail) = server(&s, "starttls", &[]);
    // No ca_file: the throw-away CA is not among the trusted roots.
    let cfg = config(
        s.dir.path(),
        smtp.port,
        "password_file = \"smtp-password\"\n",
    );
    let err = send(&mailer(&cfg).unwrap()).unwrap_err().to_string();
    assert!(
        err.contains("TLS with SMTP server") && err.contains("ca_file"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
    assert_eq!(
        smtp.auth_log(),
        "",
        "no credentials sent before the TLS check"
    );
    // A ca_file without a certificate in it is a configuration error.
    std::fs::write(s.dir.path().join("empty.pem"), "nothing\n").unwrap();
    let cfg = config(
        s.dir.path(),
        smtp.port,
        "ca_file = \"empty.pem\"\npassword_file = \"smtp-password\"\n",
    );
    let err = mailer(&cfg).unwrap_err().to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
}
