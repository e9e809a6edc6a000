//! Backend-independent pieces shared by the SQLite and PostgreSQL stores: the row model, query
//! building, evidence sampling and the sortable address keys. Keeping these in one place is what
//! makes "same semantics on both backends" true by construction rather than by care.

use crate::{
    DecisionQuery, DecisionStatus, EventQuery, StoreError, StoredDecision, StoredEvent,
    EVIDENCE_SAMPLE,
};
use ipnet::{IpNet, Ipv4Net};
use palisade_core::{canonical_ip, Decision, Event, Timestamp};
use serde::ser::SerializeMap;
use serde::Serializer;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Default page size of [`EventQuery`].
pub(crate) const DEFAULT_EVENT_LIMIT: u32 = 100;
/// Default page size of [`DecisionQuery`].
pub(crate) const DEFAULT_DECISION_LIMIT: u32 = 1000;
/// Length of one evidence sampling bucket.
const SAMPLE_BUCKET_MICROS: i64 = 3_600 * Timestamp::MICROS;

/// Columns of `events`, in the order [`RawEvent`] expects.
pub(crate) const EVENT_COLS: &str =
    "id, time, jail, filter, rule, ip, failure, username, fields, evidence";
/// Columns of `decisions`, in the order [`RawDecision`] expects.
pub(crate) const DECISION_COLS: &str =
    "id, target, jail, origin, reason, created, expires, simulated, level, status";

/// Canonical text form of an address, as stored in `events.ip` and `ip_history.ip`.
pub(crate) fn ip_text(ip: IpAddr) -> String {
    canonical_ip(ip).to_string()
}

/// Sortable binary key of an address: the family byte (4 or 6) then the address bytes. Within
/// a family keys compare like the addresses, and the families never interleave, so every
/// network is one contiguous key range (byte-wise comparison is what both SQLite BLOBs and
/// PostgreSQL BYTEA use).
pub(crate) fn ip_key(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let mut k = Vec::with_capacity(5);
            k.push(4);
            k.extend_from_slice(&v4.octets());
            k
        }
        IpAddr::V6(v6) => {
            let mut k = Vec::with_capacity(17);
            k.push(6);
            k.extend_from_slice(&v6.octets());
            k
        }
    }
}

/// Inclusive key range covering every address of `net`.
pub(crate) fn net_key_range(net: &IpNet) -> (Vec<u8>, Vec<u8>) {
    (ip_key(net.network()), ip_key(net.broadcast()))
}

/// The stored form of a decision target: host bits cleared, so text equality is network
/// equality (`1.2.3.4/24` is stored as `1.2.3.0/24`), and an IPv4-mapped IPv6 network
/// (`::ffff:1.2.3.0/120`) as the IPv4 network it is (`1.2.3.0/24`), matching how addresses
/// are canonicalised everywhere else.
pub(crate) fn canonical_net(net: &IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                return IpNet::V4(n.trunc());
            }
        }
    }
    net.trunc()
}

/// Whether `net` names one address (/32, /128).
pub(crate) fn single_address(net: &IpNet) -> Option<IpAddr> {
    (net.prefix_len() == net.max_prefix_len()).then(|| canonical_ip(net.addr()))
}

/// Canonical texts of every network that contains or equals `net`: its truncations to each
/// prefix length from 0 to its own. "Targets containing X" then becomes an exact-match lookup
/// on the indexed `target` column (at most 33 values for IPv4, 129 for IPv6) instead of a
/// range scan.
pub(crate) fn supernets(net: &IpNet) -> Vec<String> {
    let net = canonical_net(net);
    let addr = net.addr();
    (0..=net.prefix_len())
        .map(|p| {
            IpNet::new(addr, p)
                .expect("prefix is at most the network's own")
                .trunc()
                .to_string()
        })
        .collect()
}

/// Replaces NUL characters (which PostgreSQL cannot store in TEXT) with U+FFFD, on both
/// backends so they behave the same. Allocates only when a NUL is present.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Captured fields of an [`Event`], name → value, in capture order.
pub(crate) type Fields = Vec<(Arc<str>, Box<str>)>;

/// Encodes captured fields as a JSON object, keys in capture order (JSON text keeps that
/// order; a JSON object is what `json_extract` / `::jsonb ->>` want for ad-hoc queries).
pub(crate) fn fields_to_json(fields: &[(Arc<str>, Box<str>)]) -> String {
    if fields.is_empty() {
        return "{}".to_owned();
    }
    let mut out = Vec::with_capacity(16 * fields.len() + 2);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut map = ser
        .serialize_map(Some(fields.len()))
        .expect("serialising to memory cannot fail");
    for (k, v) in fields {
        map.serialize_entry(&**k, &**v)
            .expect("serialising strings to memory cannot fail");
    }
    map.end().expect("serialising to memory cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Decodes [`fields_to_json`] output, keeping the stored key order.
pub(crate) fn fields_from_json(s: &str) -> Result<Fields, StoreError> {
    struct Pairs(Fields);
    struct PairsVisitor;
    impl<'de> serde::de::Visitor<'de> for PairsVisitor {
        type Value = Pairs;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object of strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
            let mut v = Vec::with_capacity(m.size_hint().unwrap_or(0));
            while let Some((k, val)) = m.next_entry::<String, String>()? {
                v.push((Arc::from(k), val.into_boxed_str()));
            }
            Ok(Pairs(v))
        }
    }
    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(PairsVisitor)
        }
    }
    serde_json::from_str::<Pairs>(s)
        .map(|p| p.0)
        .map_err(|e| StoreError::Corrupt(format!("events.fields: {e}")))
}

/// Parses a stored status name.
fn parse_status(s: &str) -> Result<DecisionStatus, StoreError> {
    Ok(match s {
        "active" => DecisionStatus::Active,
        "expired" => DecisionStatus::Expired,
        "revoked" => DecisionStatus::Revoked,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "unknown decision status {s:?}"
            )))
        }
    })
}

/// Evidence sampling state of one address, persisted in `ip_history`.
///
/// The first [`EVIDENCE_SAMPLE`] events of an address in an hour (event time, UTC hour
/// buckets) keep their evidence line; later ones in the same hour are stored without it.
/// Events for an hour *earlier* than the one being sampled (late, out-of-order arrivals) are
/// stored without evidence too: the counts of past hours are not kept, and this keeps the
/// sample bounded whatever the input order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Hour bucket being sampled (`time / 1 h`); `None` before the first event.
    pub hour: Option<i64>,
    /// Events of that hour that kept their evidence.
    pub count: i64,
}

impl Sample {
    /// Whether an event at `time` keeps its evidence; advances the state.
    pub(crate) fn admit(&mut self, time: Timestamp) -> bool {
        let hour = time.0.div_euclid(SAMPLE_BUCKET_MICROS);
        match self.hour {
            Some(h) if hour < h => false,
            Some(h) if hour == h => {
                if self.count < i64::from(EVIDENCE_SAMPLE) {
                    self.count += 1;
                    true
                } else {
                    false
                }
            }
            _ => {
                self.hour = Some(hour);
                self.count = 1;
                true
            }
        }
    }
}

/// What one batch does to one address's history row.
#[derive(Debug)]
pub(crate) struct HistoryDelta {
    /// Canonical text.
    pub text: String,
    /// Sortable key ([`ip_key`]).
    pub key: Vec<u8>,
    /// Earliest event time in the batch.
    pub first: i64,
    /// Latest event time in the batch.
    pub last: i64,
    /// Failures in the batch.
    pub failures: i64,
    /// Events in the batch.
    pub events: i64,
    /// Sampling state: loaded from the database, then advanced over the batch.
    pub sample: Sample,
}

/// One event of a batch, resolved against its address's [`HistoryDelta`].
#[derive(Debug)]
pub(crate) struct EventRow<'a> {
    /// The event.
    pub event: &'a Event,
    /// Index into [`BatchPlan::ips`].
    pub ip: usize,
    /// Whether the evidence line is kept.
    pub keep_evidence: bool,
}

/// A batch of events prepared for writing: per-address aggregates plus per-event sampling.
///
/// Use: [`BatchPlan::new`], load each address's stored [`Sample`] into `ips[i].sample`, call
/// [`BatchPlan::sample`], then write `rows` and upsert `ips` in one transaction.
#[derive(Debug)]
pub(crate) struct BatchPlan<'a> {
    /// Distinct addresses, in order of first appearance.
    pub ips: Vec<HistoryDelta>,
    /// Events, in input order.
    pub rows: Vec<EventRow<'a>>,
}

impl<'a> BatchPlan<'a> {
    /// Groups `events` by canonical address.
    pub(crate) fn new(events: &'a [Event]) -> Self {
        let mut index: HashMap<IpAddr, usize> = HashMap::new();
        let mut ips: Vec<HistoryDelta> = Vec::new();
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let ip = canonical_ip(event.ip);
            let t = event.time.0;
            let i = *index.entry(ip).or_insert_with(|| {
                ips.push(HistoryDelta {
                    text: ip.to_string(),
                    key: ip_key(ip),
                    first: t,
                    last: t,
                    failures: 0,
                    events: 0,
                    sample: Sample::default(),
                });
                ips.len() - 1
            });
            let d = &mut ips[i];
            d.first = d.first.min(t);
            d.last = d.last.max(t);
            d.failures += i64::from(event.failure);
            d.events += 1;
            rows.push(EventRow {
                event,
                ip: i,
                keep_evidence: false,
            });
        }
        BatchPlan { ips, rows }
    }

    /// Decides which events keep their evidence, in input order, advancing each address's
    /// sampling state (which is then written back to `ip_history`).
    pub(crate) fn sample(&mut self) {
        for row in &mut self.rows {
            row.keep_evidence = self.ips[row.ip].sample.admit(row.event.time);
        }
    }
}

/// A query parameter, independent of the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    /// 64-bit integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A list of texts (SQLite binds it as a JSON array for `json_each`, PostgreSQL as
    /// `TEXT[]` for `= ANY`).
    TextList(Vec<String>),
}

/// SQL flavour to build for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `?N` placeholders, lists through `json_each`.
    Sqlite,
    /// `$N` placeholders, lists through `= ANY`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// Accumulates a `WHERE` clause and its parameters.
struct Builder {
    dialect: Dialect,
    sql: String,
    params: Vec<Param>,
    conditions: usize,
}

impl Builder {
    fn new(dialect: Dialect, select: &str) -> Self {
        Builder {
            dialect,
            sql: select.to_owned(),
            params: Vec::new(),
            conditions: 0,
        }
    }

    /// Adds a parameter and returns its placeholder.
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    /// Appends `AND`/`WHERE` and a condition.
    fn and(&mut self, cond: &str) {
        self.sql.push_str(if self.conditions == 0 {
            " WHERE "
        } else {
            " AND "
        });
        self.sql.push_str(cond);
        self.conditions += 1;
    }

    /// `column IN list` for a text list.
    fn and_in(&mut self, column: &str, list: Vec<String>) {
        let ph = self.bind(Param::TextList(list));
        let cond = match self.dialect {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each({ph}))"),
            Dialect::Postgres => format!("{column} = ANY({ph})"),
        };
        self.and(&cond);
    }

    fn finish(mut self, order: &str, limit: u32) -> (String, Vec<Param>) {
        self.sql.push_str(" ORDER BY ");
        self.sql.push_str(order);
        let ph = self.bind(Param::Int(i64::from(limit)));
        self.sql.push_str(" LIMIT ");
        self.sql.push_str(&ph);
        (self.sql, self.params)
    }
}

/// SQL and parameters for [`crate::Store::events`]: newest (highest id) first.
pub(crate) fn events_sql(dialect: Dialect, q: &EventQuery) -> (String, Vec<Param>) {
    let mut b = Builder::new(dialect, &format!("SELECT {EVENT_COLS} FROM events"));
    if let Some(ip) = q.ip {
        let ph = b.bind(Param::Text(ip_text(ip)));
        b.and(&format!("ip = {ph}"));
    }
    if let Some(jail) = &q.jail {
        let ph = b.bind(Param::Text(clean(jail).into_owned()));
        b.and(&format!("jail = {ph}"));
    }
    if let Some(t) = q.since {
        let ph = b.bind(Param::Int(t.0));
        b.and(&format!("time >= {ph}"));
    }
    if let Some(t) = q.until {
        let ph = b.bind(Param::Int(t.0));
        b.and(&format!("time < {ph}"));
    }
    if let Some(id) = q.before_id {
        let ph = b.bind(Param::Int(id));
        b.and(&format!("id < {ph}"));
    }
    b.finish("id DESC", q.limit.unwrap_or(DEFAULT_EVENT_LIMIT))
}

/// SQL and parameters for [`crate::Store::decisions`]: newest (`created`, then id) first.
pub(crate) fn decisions_sql(dialect: Dialect, q: &DecisionQuery) -> (String, Vec<Param>) {
    // PostgreSQL, decisions covering an address: one `decisions_target` probe per supernet.
    // Written as `target = ANY($1) ORDER BY created DESC LIMIT n`, the generic plan of the
    // prepared statement walks `decisions_created` backwards and filters every decision
    // (milliseconds per call with thousands of decisions).
    let lateral = dialect == Dialect::Postgres && q.target.is_some();
    let mut b = Builder::new(dialect, "");
    if let Some(target) = &q.target {
        if lateral {
            let ph = b.bind(Param::TextList(supernets(target)));
            b.sql = format!(
                "SELECT {DECISION_COLS} FROM unnest({ph}::TEXT[]) AS s(t) CROSS JOIN LATERAL \
                 (SELECT {DECISION_COLS} FROM decisions"
            );
            b.and("target = s.t");
        } else {
            b.sql = format!("SELECT {DECISION_COLS} FROM decisions");
            b.and_in("target", supernets(target));
        }
    } else {
        b.sql = format!("SELECT {DECISION_COLS} FROM decisions");
    }
    if let Some(jail) = &q.jail {
        let ph = b.bind(Param::Text(clean(jail).into_owned()));
        b.and(&format!("jail = {ph}"));
    }
    if let Some(origin) = q.origin {
        let ph = b.bind(Param::Text(origin.as_str().to_owned()));
        b.and(&format!("origin = {ph}"));
    }
    if let Some(t) = q.active_at {
        let ph = b.bind(Param::Int(t.0));
        b.and(&format!(
            "status = 'active' AND (expires IS NULL OR expires > {ph})"
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_DECISION_LIMIT);
    if lateral {
        let ph = b.bind(Param::Int(i64::from(limit)));
        b.sql.push_str(&format!(
            " ORDER BY created DESC, id DESC LIMIT {ph}) d ORDER BY created DESC, id DESC LIMIT {ph}"
        ));
        return (b.sql, b.params);
    }
    b.finish("created DESC, id DESC", limit)
}

/// `SELECT COUNT(*)` over what [`decisions_sql`] selects, without its limit.
pub(crate) fn decision_count_sql(dialect: Dialect, q: &DecisionQuery) -> (String, Vec<Param>) {
    let q = DecisionQuery {
        limit: Some(u32::MAX),
        ..q.clone()
    };
    let (sql, params) = decisions_sql(dialect, &q);
    (format!("SELECT COUNT(*) FROM ({sql}) AS counted"), params)
}

/// An `events` row as the drivers return it ([`EVENT_COLS`] order).
#[derive(Debug)]
pub(crate) struct RawEvent {
    pub id: i64,
    pub time: i64,
    pub jail: String,
    pub filter: String,
    pub rule: String,
    pub ip: String,
    pub failure: bool,
    pub user: Option<String>,
    pub fields: String,
    pub evidence: Option<String>,
}

impl RawEvent {
    /// Decodes into the public type.
    pub(crate) fn decode(self) -> Result<StoredEvent, StoreError> {
        let ip = self.ip.parse::<IpAddr>().map_err(|_| {
            StoreError::Corrupt(format!("events.ip {:?} (id {})", self.ip, self.id))
        })?;
        Ok(StoredEvent {
            id: self.id,
            jail: self.jail,
            event: Event {
                time: Timestamp(self.time),
                ip,
                filter: Arc::from(self.filter),
                rule: Arc::from(self.rule),
                failure: self.failure,
                user: self.user.map(String::into_boxed_str),
                fields: fields_from_json(&self.fields)?,
                evidence: self.evidence.unwrap_or_default().into_boxed_str(),
            },
        })
    }
}

/// A `decisions` row as the drivers return it ([`DECISION_COLS`] order).
#[derive(Debug)]
pub(crate) struct RawDecision {
    pub id: i64,
    pub target: String,
    pub jail: String,
    pub origin: String,
    pub reason: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub simulated: bool,
    pub level: i64,
    pub status: String,
}

impl RawDecision {
    /// Decodes into the public type.
    pub(crate) fn decode(self) -> Result<StoredDecision, StoreError> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("decisions.{what} (id {})", self.id));
        let target = self
            .target
            .parse::<IpNet>()
            .map_err(|_| corrupt("target"))?;
        let origin = self.origin.parse().map_err(|_| corrupt("origin"))?;
        let level = u32::try_from(self.level).map_err(|_| corrupt("level"))?;
        let status = parse_status(&self.status)?;
        Ok(StoredDecision {
            decision: Decision {
                id: self.id,
                target,
                jail: self.jail,
                origin,
                reason: self.reason,
                created: Timestamp(self.created),
                expires: self.expires.map(Timestamp),
                simulated: self.simulated,
                level,
            },
            status,
        })
    }
}

/// Decodes rows and orders decisions returned by an `UPDATE … RETURNING` (whose order the
/// databases do not define) oldest first.
pub(crate) fn decode_changed(raw: Vec<RawDecision>) -> Result<Vec<Decision>, StoreError> {
    let mut out = raw
        .into_iter()
        .map(|r| r.decode().map(|s| s.decision))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|d| (d.created, d.id));
    Ok(out)
}

/// Saturating conversion of a row count.
pub(crate) fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Refuses a database whose schema is newer than this binary's.
pub(crate) fn check_version(found: i64, supported: i64) -> Result<(), StoreError> {
    if found > supported {
        Err(StoreError::TooNew { found, supported })
    } else {
        Ok(())
    }
}

// --- server queries --- (shared helpers)
/// One UTC hour, in microseconds.
pub(crate) const HOUR_MICROS: i64 = 3_600 * Timestamp::MICROS;

/// The first hour number whose start is at or after `t`.
pub(crate) fn hour_ceil(t: Timestamp) -> i64 {
    t.0.div_euclid(HOUR_MICROS) + i64::from(t.0.rem_euclid(HOUR_MICROS) != 0)
}

/// Start of hour number `h`.
pub(crate) fn hour_start(h: i64) -> Timestamp {
    Timestamp(h.saturating_mul(HOUR_MICROS))
}

/// Builds an [`crate::HourCount`] from a rollup row.
pub(crate) fn hour_count(h: i64, jail: String, count: i64, failures: i64) -> crate::HourCount {
    crate::HourCount {
        hour: hour_start(h),
        jail,
        count: count.max(0) as u64,
        failures: failures.max(0) as u64,
    }
}

/// Decodes an `ip_history` row.
pub(crate) fn history_row(
    ip: &str,
    first: i64,
    last: i64,
    failures: i64,
    banned: i64,
    events: i64,
) -> Result<crate::IpHistory, StoreError> {
    let ip = ip
        .parse::<IpAddr>()
        .map_err(|_| StoreError::Corrupt(format!("ip_history.ip {ip:?}")))?;
    Ok(crate::IpHistory {
        ip,
        first_seen: Timestamp(first),
        last_seen: Timestamp(last),
        failures: failures.max(0) as u64,
        times_banned: banned.max(0) as u64,
        events: events.max(0) as u64,
    })
}

/// Decodes an `allowlist` row.
pub(crate) fn allow_entry(
    id: i64,
    net: &str,
    comment: String,
    created: i64,
) -> Result<crate::AllowEntry, StoreError> {
    let net = net
        .parse::<IpNet>()
        .map_err(|_| StoreError::Corrupt(format!("allowlist.net {net:?} (id {id})")))?;
    Ok(crate::AllowEntry {
        id,
        net,
        comment,
        created: Timestamp(created),
    })
}
// --- end server queries ---

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ip: &str, secs: i64) -> Event {
        Event {
            time: Timestamp::from_secs(secs),
            ip: ip.parse().unwrap(),
            filter: "sshd".into(),
            rule: "r".into(),
            failure: true,
            user: None,
            fields: vec![],
            evidence: "line".into(),
        }
    }

    #[test]
    fn keys_sort_like_addresses_and_families_do_not_mix() {
        let a = ip_key("1.2.3.4".parse().unwrap());
        let b = ip_key("1.2.3.5".parse().unwrap());
        let v6 = ip_key("::".parse().unwrap());
        assert!(a < b && b < v6);
        let (lo, hi) = net_key_range(&"10.0.0.0/8".parse().unwrap());
        assert!(lo <= ip_key("10.9.9.9".parse().unwrap()));
        assert!(hi >= ip_key("10.255.255.255".parse().unwrap()));
        assert!(hi < ip_key("11.0.0.0".parse().unwrap()));
        let (lo, hi) = net_key_range(&"::/0".parse().unwrap());
        assert!(lo > a && hi > b, "an all-IPv6 range holds no IPv4 key");
    }

    #[test]
    fn targets_are_canonical() {
        let c = |s: &str| canonical_net(&s.parse().unwrap()).to_string();
        assert_eq!(c("1.2.3.4/24"), "1.2.3.0/24");
        assert_eq!(c("::ffff:1.2.3.4/128"), "1.2.3.4/32");
        assert_eq!(c("::ffff:1.2.3.4/120"), "1.2.3.0/24");
        assert_eq!(c("::ffff:0:0/95"), "::fffe:0:0/95");
        assert_eq!(c("2001:db8::1/64"), "2001:db8::/64");
    }

    #[test]
    fn supernets_cover_every_prefix() {
        let s = supernets(&"1.2.3.4/32".parse().unwrap());
        assert_eq!(s.len(), 33);
        assert_eq!(s[0], "0.0.0.0/0");
        assert_eq!(s[24], "1.2.3.0/24");
        assert_eq!(s[32], "1.2.3.4/32");
        let s = supernets(&"2001:db8:1:2::/64".parse().unwrap());
        assert_eq!(s.len(), 65);
        assert_eq!(s[64], "2001:db8:1:2::/64");
        assert_eq!(s[48], "2001:db8:1::/48");
    }

    #[test]
    fn fields_round_trip_in_order() {
        let f: Vec<(Arc<str>, Box<str>)> = vec![
            ("z".into(), "1".into()),
            ("a".into(), "quote \" back\\slash\nnl \0 nul".into()),
        ];
        let j = fields_to_json(&f);
        assert!(j.starts_with("{\"z\""), "{j}");
        assert_eq!(fields_from_json(&j).unwrap(), f);
        assert_eq!(fields_to_json(&[]), "{}");
        assert!(fields_from_json("{}").unwrap().is_empty());
        assert!(matches!(
            fields_from_json("[1]"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn sampling_keeps_first_five_per_hour() {
        let mut s = Sample::default();
        let base = 1_000 * 3_600;
        let kept: Vec<bool> = (0..7)
            .map(|i| s.admit(Timestamp::from_secs(base + i)))
            .collect();
        assert_eq!(kept, [true, true, true, true, true, false, false]);
        assert!(
            !s.admit(Timestamp::from_secs(base - 1)),
            "late event of a past hour"
        );
        assert!(
            s.admit(Timestamp::from_secs(base + 3_600)),
            "next hour starts over"
        );
        assert_eq!(
            s,
            Sample {
                hour: Some(1_001),
                count: 1
            }
        );
    }

    #[test]
    fn batch_plan_groups_by_canonical_address() {
        let events = vec![
            ev("1.1.1.1", 10),
            ev("::ffff:1.1.1.1", 5),
            ev("2001:db8::1", 7),
        ];
        let mut p = BatchPlan::new(&events);
        assert_eq!(p.ips.len(), 2);
        assert_eq!(p.ips[0].text, "1.1.1.1");
        assert_eq!((p.ips[0].first, p.ips[0].last), (5_000_000, 10_000_000));
        assert_eq!(p.ips[0].failures, 2);
        p.ips[1].sample = Sample {
            hour: Some(0),
            count: i64::from(EVIDENCE_SAMPLE),
        };
        p.sample();
        let kept: Vec<bool> = p.rows.iter().map(|r| r.keep_evidence).collect();
        assert_eq!(kept, [true, true, false]);
    }

    #[test]
    fn query_building_per_dialect() {
        let q = EventQuery {
            ip: Some("::ffff:1.2.3.4".parse().unwrap()),
            before_id: Some(9),
            ..Default::default()
        };
        let (sql, params) = events_sql(Dialect::Postgres, &q);
        assert!(
            sql.ends_with("WHERE ip = $1 AND id < $2 ORDER BY id DESC LIMIT $3"),
            "{sql}"
        );
        assert_eq!(
            params,
            [
                Param::Text("1.2.3.4".into()),
                Param::Int(9),
                Param::Int(100)
            ]
        );
        let q = DecisionQuery {
            target: Some("1.2.3.4/32".parse().unwrap()),
            active_at: Some(Timestamp(5)),
            ..Default::default()
        };
        let (sql, params) = decisions_sql(Dialect::Sqlite, &q);
        assert!(
            sql.contains("target IN (SELECT value FROM json_each(?1))"),
            "{sql}"
        );
        assert!(sql.contains("expires > ?2"), "{sql}");
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn nul_is_replaced() {
        assert!(matches!(clean("abc"), Cow::Borrowed(_)));
        assert_eq!(clean("a\0b"), "a\u{FFFD}b");
    }
}
