//! Notifications about decisions (`[notify]`): e-mail, a web hook (Palisade JSON, Slack or
//! Discord shape) and a JSON-lines file.
//!
//! The [`Notifier`] is a [`palisade_core::Observer`]: the engine thread only pushes the
//! decision onto a bounded queue (dropping and counting if it is full), and one background
//! thread does the rest, so a slow mail server never delays a ban.
//!
//! An attack wave gives one message, not thousands:
//! - bans are **aggregated**: the first ban opens a window (`window`, default 60 s) and
//!   everything decided until it closes goes out in one message;
//! - a target already reported within `dedup` (default 1 h) is not listed again, only counted;
//! - each channel sends at most `max_per_hour` messages in any rolling hour; what is held back
//!   stays pending and goes out, summarised, in the next message allowed;
//! - one message lists at most [`MAX_LISTED`] decisions; the rest are counted.
//!
//! The JSON-lines file is a record, not a message: it gets every decision, one line each,
//! without throttling.

use crate::mail::{hostname, Mailer};
use crate::secret::Secret;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use palisade_config::Config;
use palisade_core::Observer;
use palisade_core::UnbanReason;
use palisade_core::{Clock, Decision, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Decisions listed in one message; more are counted.
pub const MAX_LISTED: usize = 50;
/// Decisions queued from the engine to the notifier thread.
const QUEUE: usize = 4096;
/// Targets remembered for de-duplication.
const DEDUP_MAX: usize = 100_000;

/// Problems building the notifier.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// E-mail channel.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    /// Web hook channel.
    #[error("[notify.webhook]: {0}")]
    Webhook(String),
    /// File channel.
    #[error("[notify] file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What one message reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Bans, oldest first (at most [`MAX_LISTED`]).
    pub bans: Vec<Decision>,
    /// Lifted bans (only with `unbans = true`), at most [`MAX_LISTED`].
    pub unbans: Vec<Decision>,
    /// Bans decided but not listed (over the limit of one message).
    pub more_bans: u64,
    /// Bans not listed because their target was reported recently.
    pub duplicates: u64,
    /// Bans lost because the queue from the engine was full.
    pub dropped: u64,
    /// This host.
    pub host: String,
}

impl Batch {
    /// Total bans this message accounts for.
    pub fn ban_count(&self) -> u64 {
        self.bans.len() as u64 + self.more_bans + self.duplicates
    }

    /// One-line subject.
    pub fn subject(&self) -> String {
        let n = self.ban_count();
        let mut s = format!("{n} ban{} on {}", if n == 1 { "" } else { "s" }, self.host);
        if !self.unbans.is_empty() {
            s.push_str(&format!(", {} lifted", self.unbans.len()));
        }
        s
    }

    /// Plain-text body.
    pub fn text(&self) -> String {
        let mut s = format!("Palisade on {}: {}\n\n", self.host, self.subject());
        for d in &self.bans {
            s.push_str(&format!("BAN   {}\n", describe(d)));
        }
        if self.more_bans > 0 {
            s.push_str(&format!("... and {} more bans\n", self.more_bans));
        }
        if self.duplicates > 0 {
            s.push_str(&format!(
                "{} repeated bans of recently reported targets not listed\n",
                self.duplicates
            ));
        }
        if self.dropped > 0 {
            s.push_str(&format!(
                "{} decisions were not seen by the notifier (queue full)\n",
                self.dropped
            ));
        }
        for d in &self.unbans {
            s.push_str(&format!(
                "UNBAN {} ({})\n",
                target_text(d),
                sanitize(&d.jail)
            ));
        }
        s
    }

    /// Palisade's own JSON shape.
    pub fn json(&self) -> serde_json::Value {
        let one = |d: &Decision| {
            serde_json::json!({
                "target": target_text(d),
                "jail": d.jail,
                "origin": d.origin.as_str(),
                "reason": d.reason,
                "created": d.created.to_string(),
                "expires": d.expires.map(|e| e.to_string()),
                "simulated": d.simulated,
            })
        };
        serde_json::json!({
            "source": "palisade",
            "host": self.host,
            "bans": self.bans.iter().map(one).collect::<Vec<_>>(),
            "unbans": self.unbans.iter().map(one).collect::<Vec<_>>(),
            "more_bans": self.more_bans,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "total_bans": self.ban_count(),
        })
    }
}

/// `1.2.3.4` for single addresses, CIDR otherwise.
pub fn target_text(d: &Decision) -> String {
    if d.target.prefix_len() == d.target.max_prefix_len() {
        d.target.addr().to_string()
    } else {
        d.target.to_string()
    }
}

/// Control characters replaced and length capped: reasons can quote log text.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

fn describe(d: &Decision) -> String {
    let dur = d
        .duration()
        .map_or("permanent".to_string(), palisade_detect::fmt_duration);
    format!(
        "{} jail={} for {}{}: {}",
        target_text(d),
        sanitize(&d.jail),
        dur,
        if d.simulated { " [simulated]" } else { "" },
        sanitize(&d.reason)
    )
}

/// Where messages go.
pub trait Channel: Send {
    /// Short name for logs.
    fn name(&self) -> &str;
    /// Delivers one message.
    fn send(&mut self, batch: &Batch) -> Result<(), String>;
}

/// E-mail through [`Mailer`].
pub struct EmailChannel(pub Mailer);

impl Channel for EmailChannel {
    fn name(&self) -> &str {
        "email"
    }
    fn send(&mut self, b: &Batch) -> Result<(), String> {
        self.0
            .send(&b.subject(), &b.text(), None)
            .map_err(|e| e.to_string())
    }
}

/// Body shapes of the web hook (`[notify.webhook] format`): `Json` is [`Batch::json`],
/// `Slack` is `{"text": …}` (Slack incoming web hooks, Mattermost, Rocket.Chat), `Discord` is
/// `{"content": …}` (at most 2000 characters).
pub use palisade_config::WebhookFormat as HookFormat;

/// Escapes what Slack's markup gives meaning to.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Defuses Discord mentions (`@everyone`, `<@id>`) in text.
fn discord_escape(s: &str) -> String {
    s.replace('@', "@\u{200b}")
}

/// The POST body for `format`.
pub fn hook_body(format: HookFormat, b: &Batch) -> serde_json::Value {
    match format {
        HookFormat::Json => b.json(),
        HookFormat::Slack => serde_json::json!({ "text": slack_escape(&b.text()) }),
        HookFormat::Discord => {
            let t: String = discord_escape(&b.text()).chars().take(1990).collect();
            serde_json::json!({ "content": t, "allowed_mentions": { "parse": [] } })
        }
    }
}

/// An HTTP POST of a JSON body.
pub struct WebhookChannel {
    url: Secret,
    format: HookFormat,
    agent: ureq::Agent,
}

impl WebhookChannel {
    /// A web hook to `url` (kept secret: hook URLs carry tokens).
    pub fn new(url: Secret, format: HookFormat, timeout: Duration) -> Self {
        WebhookChannel {
            url,
            format,
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
        }
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        "webhook"
    }
    fn send(&mut self, b: &Batch) -> Result<(), String> {
        let body = hook_body(self.format, b).to_string();
        self.agent
            .post(self.url.expose())
            .set("Content-Type", "application/json")
            .set(
                "User-Agent",
                concat!("palisade/", env!("CARGO_PKG_VERSION")),
            )
            .send_string(&body)
            .map(|_| ())
            .map_err(|e| self.url.scrub(&e.to_string()))
    }
}

struct Limited {
    channel: Box<dyn Channel>,
    sent: VecDeque<Timestamp>,
}

enum Msg {
    Ban(Decision),
    Unban(Decision),
    Flush(Sender<()>),
    /// Answered once every message queued before it has been taken (sends nothing early).
    Sync(Sender<()>),
}

/// Settings of the aggregation.
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    /// Aggregation window.
    pub window: Duration,
    /// Messages per channel per rolling hour.
    pub max_per_hour: u32,
    /// Same target not listed again within this.
    pub dedup: Duration,
    /// Report lifted bans.
    pub unbans: bool,
    /// Report simulated decisions.
    pub simulated: bool,
}

/// The notifier: an [`Observer`] feeding a background thread.
pub struct Notifier {
    tx: Sender<Msg>,
    dropped: Arc<AtomicU64>,
    throttle: Throttle,
}

impl Notifier {
    /// Starts the background thread with these channels and an optional JSON-lines file.
    pub fn start(
        channels: Vec<Box<dyn Channel>>,
        file: Option<PathBuf>,
        throttle: Throttle,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Notifier>, NotifyError> {
        let file = match file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(|source| NotifyError::File { path: p, source })?,
            ),
            None => None,
        };
        let (tx, rx) = bounded(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            channels: channels
                .into_iter()
                .map(|channel| Limited {
                    channel,
                    sent: VecDeque::new(),
                })
                .collect(),
            file,
            throttle,
            clock,
            pending: Batch {
                host: hostname(),
                ..Default::default()
            },
            opened: None,
            reported: HashMap::new(),
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("palisade-notify".into())
            .spawn(move || worker.run(rx))
            .map_err(|source| NotifyError::File {
                path: PathBuf::from("<thread>"),
                source,
            })?;
        Ok(Arc::new(Notifier {
            tx,
            dropped,
            throttle,
        }))
    }

    /// Sends everything pending now, ignoring the window (not the hourly limit); waits for it.
    pub fn flush(&self) {
        let (t, r) = bounded(1);
        if self.tx.send(Msg::Flush(t)).is_ok() {
            let _ = r.recv_timeout(Duration::from_secs(60));
        }
    }

    /// Waits (at most 60 s) until the worker has taken every decision queued so far, without
    /// sending early: what is pending stays pending until its window ends.
    pub fn sync(&self) {
        let (t, r) = bounded(1);
        if self.tx.send(Msg::Sync(t)).is_ok() {
            let _ = r.recv_timeout(Duration::from_secs(60));
        }
    }

    fn push(&self, m: Msg) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

impl Observer for Notifier {
    fn ban(&self, d: &Decision) {
        if d.simulated && !self.throttle.simulated {
            return;
        }
        self.push(Msg::Ban(d.clone()));
    }

    fn unban(&self, d: &Decision, _why: UnbanReason) {
        if self.throttle.unbans && (!d.simulated || self.throttle.simulated) {
            self.push(Msg::Unban(d.clone()));
        }
    }
}

struct Worker {
    channels: Vec<Limited>,
    file: Option<std::fs::File>,
    throttle: Throttle,
    clock: Arc<dyn Clock>,
    pending: Batch,
    /// When the current aggregation window opened.
    opened: Option<Timestamp>,
    reported: HashMap<ipnet::IpNet, Timestamp>,
    dropped: Arc<AtomicU64>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Msg::Ban(d)) => self.add_ban(d),
                Ok(Msg::Unban(d)) => {
                    self.record_line("unban", &d);
                    if self.pending.unbans.len() < MAX_LISTED {
                        self.pending.unbans.push(d);
                    }
                    self.opened.get_or_insert(self.clock.now());
                }
                Ok(Msg::Flush(done)) => {
                    self.send(true);
                    let _ = done.send(());
                }
                Ok(Msg::Sync(done)) => {
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.send(true);
                    return;
                }
            }
            self.send(false);
        }
    }

    fn record_line(&mut self, kind: &str, d: &Decision) {
        if let Some(f) = &mut self.file {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["event"] = kind.into();
            v["host"] = self.pending.host.clone().into();
            let mut line = v.to_string();
            line.push('\n');
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::warn!(error = %e, "notify: writing the JSON-lines file failed");
            }
        }
    }

    fn add_ban(&mut self, d: Decision) {
        self.record_line("ban", &d);
        let now = self.clock.now();
        self.opened.get_or_insert(now);
        let dedup = self.throttle.dedup;
        if let Some(t) = self.reported.get(&d.target) {
            if now.since(*t) < dedup {
                self.pending.duplicates += 1;
                return;
            }
        }
        if self.reported.len() >= DEDUP_MAX {
            self.reported.retain(|_, t| now.since(*t) < dedup);
            if self.reported.len() >= DEDUP_MAX {
                self.reported.clear();
            }
        }
        self.reported.insert(d.target, now);
        if self.pending.bans.len() < MAX_LISTED {
            self.pending.bans.push(d);
        } else {
            self.pending.more_bans += 1;
        }
    }

    /// Sends the pending batch if its window is over (or `force`) and a channel may send.
    fn send(&mut self, force: bool) {
        let Some(opened) = self.opened else {
            return;
        };
        let now = self.clock.now();
        if !force && now.since(opened) < self.throttle.window {
            return;
        }
        self.pending.dropped += self.dropped.swap(0, Relaxed);
        let b = &self.pending;
        if b.bans.is_empty() && b.unbans.is_empty() && b.more_bans == 0 {
            // Only duplicates: nothing new to say.
            self.reset();
            return;
        }
        let hour = Duration::from_secs(3600);
        let max = self.throttle.max_per_hour as usize;
        let mut sent_any = false;
        let mut held = false;
        for l in &mut self.channels {
            while l.sent.front().is_some_and(|t| now.since(*t) >= hour) {
                l.sent.pop_front();
            }
            if l.sent.len() >= max {
                held = true;
                continue;
            }
            l.sent.push_back(now);
            sent_any = true;
            if let Err(e) = l.channel.send(&self.pending) {
                tracing::warn!(channel = l.channel.name(), error = %e, "notification failed");
            }
        }
        if sent_any || !held {
            self.reset();
        }
    }

    fn reset(&mut self) {
        let host = std::mem::take(&mut self.pending.host);
        self.pending = Batch {
            host,
            ..Default::default()
        };
        self.opened = None;
    }
}

/// Builds the notifier from `[notify]`: `None` when the section is absent or names no
/// channel. The daemon passes it as its observer.
pub fn build_notifier(cfg: &Config) -> Result<Option<Arc<dyn Observer>>, NotifyError> {
    Ok(
        build_notifier_with(cfg, Arc::new(palisade_core::SystemClock))?
            .map(|n| n as Arc<dyn Observer>),
    )
}

/// [`build_notifier`] with an injected clock, returning the concrete type (tests, flushing).
pub fn build_notifier_with(
    cfg: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<Notifier>>, NotifyError> {
    let Some(n) = &cfg.notify else {
        return Ok(None);
    };
    let mut channels: Vec<Box<dyn Channel>> = Vec::new();
    if let Some(e) = &n.email {
        channels.push(Box::new(EmailChannel(Mailer::new(e, cfg)?)));
    }
    if let Some(w) = &n.webhook {
        let format = w.format;
        channels.push(Box::new(WebhookChannel::new(
            Secret::new(w.url.0.clone()),
            format,
            w.timeout.0,
        )));
    }
    let file = n.file.as_deref().map(|f| cfg.resolve(f));
    if channels.is_empty() && file.is_none() {
        return Ok(None);
    }
    let throttle = Throttle {
        window: n.window.0,
        max_per_hour: n.max_per_hour.max(1),
        dedup: n.dedup.0,
        unbans: n.unbans,
        simulated: n.simulated,
    };
    Notifier::start(channels, file, throttle, clock).map(Some)
}
