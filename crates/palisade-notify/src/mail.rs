//! SMTP delivery (lettre) shared by the notifier and the digest: STARTTLS, implicit TLS or
//! plain (for a local relay), optional authentication, multipart text + HTML.

use crate::secret::Secret;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use palisade_config::{Config, EmailSection, EmailTls};
use std::time::Duration;

/// Problems sending mail.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The configuration is unusable.
    #[error("[notify.email]: {0}")]
    Config(String),
    /// Building or sending failed.
    #[error("sending mail: {0}")]
    Send(String),
}

/// A configured SMTP sender.
pub struct Mailer {
    transport: SmtpTransport,
    /// `host:port`, for error messages.
    server: String,
    username: Option<String>,
    from: Mailbox,
    to: Vec<Mailbox>,
    prefix: String,
    secret: Option<Secret>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Builds from `[notify.email]`; `cfg` resolves `password_file`.
    pub fn new(e: &EmailSection, cfg: &Config) -> Result<Self, MailError> {
        let bad = |m: String| MailError::Config(m);
        let port = e.smtp_port.unwrap_or(match e.tls {
            EmailTls::Tls => 465,
            EmailTls::None => 25,
            EmailTls::Starttls => 587,
        });
        let tls = match e.tls {
            EmailTls::None => Tls::None,
            mode => {
                let mut tb = TlsParameters::builder(e.smtp_host.clone());
                if let Some(ca) = &e.ca_file {
                    let path = cfg.resolve(ca);
                    let pem = std::fs::read(&path)
                        .map_err(|x| bad(format!("ca_file {}: {x}", path.display())))?;
                    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                        return Err(bad(format!(
                            "ca_file {}: no PEM certificate in it",
                            path.display()
                        )));
                    }
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|x| bad(format!("ca_file {}: {x}", path.display())))?;
                    tb = tb.add_root_certificate(cert);
                }
                let params = tb
                    .build_rustls()
                    .map_err(|x| bad(format!("TLS settings: {x}")))?;
                if mode == EmailTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut b = SmtpTransport::builder_dangerous(&e.smtp_host)
            .tls(tls)
            .port(port)
            .timeout(Some(e.timeout.0.max(Duration::from_secs(1))));
        let secret = Secret::from_config(
            e.password.as_ref(),
            e.password_file
                .as_deref()
                .map(|p| cfg.resolve(p))
                .as_deref(),
        )
        .map_err(|x| bad(format!("reading password_file: {x}")))?;
        if let Some(user) = &e.username {
            // Never hand a password to a plain-text connection off this machine.
            if e.tls == "none" && !palisade_config::is_loopback_host(&e.smtp_host) {
                return Err(bad(format!(
                    "tls = \"none\" with a login would send the password in clear text to {:?}; \
                     use \"starttls\" or \"tls\"",
                    e.smtp_host
                )));
            }
            let pw = secret.clone().unwrap_or_default();
            b = b.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
        }
        let from: Mailbox = e
            .from
            .parse()
            .map_err(|x| bad(format!("from {:?}: {x}", e.from)))?;
        let to =
            e.to.iter()
                .map(|t| t.parse().map_err(|x| bad(format!("to {t:?}: {x}"))))
                .collect::<Result<Vec<Mailbox>, _>>()?;
        Ok(Mailer {
            transport: b.build(),
            server: format!("{}:{port}", e.smtp_host),
            username: e.username.clone(),
            from,
            to,
            prefix: e.subject_prefix.clone(),
            secret,
        })
    }

    /// Sends one message: text only, or text and HTML alternatives.
    pub fn send(&self, subject: &str, text: &str, html: Option<&str>) -> Result<(), MailError> {
        let subject = format!("{} {}", self.prefix, one_line(subject))
            .trim()
            .to_string();
        let mut b = Message::builder().from(self.from.clone()).subject(subject);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let msg = match html {
            Some(h) => b.multipart(MultiPart::alternative_plain_html(
                text.to_string(),
                h.to_string(),
            )),
            None => b.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.to_string()),
            ),
        }
        .map_err(|e| MailError::Send(e.to_string()))?;
        self.transport.send(&msg).map_err(|e| {
            let m = self.explain(&e);
            MailError::Send(match &self.secret {
                Some(s) => s.scrub(&m),
                None => m,
            })
        })?;
        Ok(())
    }

    /// A message naming the server and, for the usual failures, the likely cause.
    fn explain(&self, e: &lettre::transport::smtp::Error) -> String {
        if e.status().is_some_and(|c| c.to_string() == "535") {
            format!(
                "SMTP server {} refused the login of user {:?} (wrong user name or password?): {e}",
                self.server,
                self.username.as_deref().unwrap_or("")
            )
        } else if e.is_tls() || e.to_string().contains("certificate") {
            format!(
                "TLS with SMTP server {} failed (a private or self-signed certificate needs ca_file): {e}",
                self.server
            )
        } else if e.is_timeout() {
            format!("SMTP server {} did not answer in time: {e}", self.server)
        } else {
            format!("via SMTP server {}: {e}", self.server)
        }
    }
}

/// Control characters (header injection) removed, cut to 200 characters.
pub fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// This host's name, for subjects and message bodies.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| one_line(s.trim()))
        .unwrap_or_else(|_| "localhost".into())
}
