//! Test helpers: a tiny HTTP/1.1 receiver on 127.0.0.1 (std only) and an SMTP server
//! (Python's aiosmtpd) that saves each message to a folder.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// A local HTTP receiver answering every request with `status`.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Req>>>,
}

impl Receiver {
    pub fn start(status: u16) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Req>>> = Arc::default();
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                let mut parts = first.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let n: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; n];
                let _ = r.read_exact(&mut body);
                g.lock().unwrap().push(Req {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into(),
                });
                let reply = "{\"data\":{}}";
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Receiver { url, got }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or 10 s).
    pub fn wait_for(&self, n: usize) -> Vec<Req> {
        let t = Instant::now();
        while self.got.lock().unwrap().len() < n && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.requests()
    }
}

/// Decodes `application/x-www-form-urlencoded`.
pub fn form(body: &str) -> HashMap<String, String> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(h, 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

/// How the test SMTP server secures its connections.
#[derive(Clone, Debug, Default)]
pub struct SmtpSecurity {
    /// `"starttls"` (STARTTLS required before anything else), `"tls"` (implicit TLS), or
    /// empty (plain text).
    pub mode: &'static str,
    /// Server certificate chain and key (PEM).
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Required login, when set: user name and password.
    pub login: Option<(String, String)>,
    /// AUTH mechanisms not offered (e.g. `["LOGIN"]` to leave only PLAIN).
    pub exclude_mechanisms: Vec<&'static str>,
}

/// An aiosmtpd server saving each message as a file in `dir`; killed on drop.
pub struct Smtp {
    pub port: u16,
    pub dir: PathBuf,
    child: std::process::Child,
}

const SMTP_SCRIPT: &str = r#"
import sys, time, os, json, email, email.policy, ssl, logging
from aiosmtpd.controller import Controller
import warnings
logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # refused handshakes are expected
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")  # implicit TLS
from aiosmtpd.smtp import AuthResult, LoginPassword
out, port = sys.argv[1], int(sys.argv[2])
opts = json.loads(sys.argv[3])
ctx = None
if opts.get("cert"):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(opts["cert"], opts["key"])
def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == opts["user"]
          and auth_data.password.decode() == opts["password"])
    with open(os.path.join(out, "auth.log"), "a") as f:
        f.write("%s %s %s\n" % (mechanism, auth_data.login.decode(), "ok" if ok else "refused"))
    if ok:
        session.x_mechanism = mechanism
    return AuthResult(success=ok, handled=False, auth_data=auth_data)
class H:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        H.n += 1
        tmp = os.path.join(out, "msg%d.tmp" % H.n)
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content)
        m = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = [{"type": p.get_content_type(), "body": p.get_content()} for p in m.walk() if not p.is_multipart()]
        summary = {"headers": {k.lower(): str(v) for k, v in m.items()}, "type": m.get_content_type(), "parts": parts,
                   "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                   "tls": bool(server.transport.get_extra_info("cipher")),
                   "login": getattr(session, "login_data", None) and session.login_data.decode(),
                   "mechanism": getattr(session, "x_mechanism", None)}
        with open(os.path.join(out, "msg%d.json" % H.n), "w") as f:
            json.dump(summary, f)
        os.rename(tmp, os.path.join(out, "msg%d.eml" % H.n))
        return "250 OK"
kw = {}
if opts.get("user"):
    kw.update(authenticator=authenticator, auth_required=True,
              auth_exclude_mechanism=opts.get("exclude", []))
if opts.get("mode") == "starttls":
    kw.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
elif opts.get("mode") == "tls":
    # Implicit TLS: every byte is encrypted; aiosmtpd's auth_require_tls only knows STARTTLS.
    kw.update(ssl_context=ctx, auth_require_tls=False)
else:
    kw.update(auth_require_tls=False)
c = Controller(H(), hostname="127.0.0.1", port=port, **kw)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// A throw-away certificate authority and a server certificate it signed for `127.0.0.1`
/// and `localhost`, made with the openssl command-line tool in `dir`. Returns
/// `(ca.pem, server chain, server key)`.
pub fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command-line tool");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Palisade Test CA",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

impl Smtp {
    /// A plain-text server without authentication.
    pub fn start(dir: &Path) -> Smtp {
        Smtp::start_with(dir, &SmtpSecurity::default())
    }

    /// A server with TLS and/or a required login.
    pub fn start_with(dir: &Path, sec: &SmtpSecurity) -> Smtp {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut opts = serde_json::json!({ "mode": sec.mode, "exclude": sec.exclude_mechanisms });
        if let Some((cert, key)) = &sec.cert {
            opts["cert"] = cert.to_str().unwrap().into();
            opts["key"] = key.to_str().unwrap().into();
        }
        if let Some((user, password)) = &sec.login {
            opts["user"] = user.clone().into();
            opts["password"] = password.clone().into();
        }
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = std::process::Command::new(&py)
            .args([
                "-c",
                SMTP_SCRIPT,
                dir.to_str().unwrap(),
                &port.to_string(),
                &opts.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (python3 -m pip install aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start; install it with: python3 -m pip install aiosmtpd"
        );
        Smtp {
            port,
            dir: dir.to_path_buf(),
            child,
        }
    }

    /// The server's record of login attempts: `MECHANISM user ok|refused` per line.
    pub fn auth_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("auth.log")).unwrap_or_default()
    }

    /// Waits for `n` saved messages (or 20 s) and returns Python's parse of each
    /// (`headers`, `type`, `parts[].type`, `parts[].body` decoded), in order.
    pub fn parsed(&self, n: usize) -> Vec<serde_json::Value> {
        let raw = self.messages(n);
        (1..=raw.len())
            .map(|i| {
                let p = self.dir.join(format!("msg{i}.json"));
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
            })
            .collect()
    }

    /// Waits for `n` saved messages (or 20 s) and returns their text, in order.
    pub fn messages(&self, n: usize) -> Vec<String> {
        let t = Instant::now();
        loop {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect();
            if v.len() >= n || t.elapsed() > Duration::from_secs(20) {
                v.sort();
                return v
                    .iter()
                    .map(|p| std::fs::read_to_string(p).unwrap())
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
