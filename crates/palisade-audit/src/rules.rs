//! The rules: reddalert's four (with its options) and modern checks under Prowler's ids. Each
//! rule reads one source; when that source failed, the rule is `errored` for its scope and its
//! open findings stay open.

use crate::collect::{AccountInventory, Permission, RegionInventory, SecurityGroup};
use crate::config::{parse_port_key, AuditConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Low,
    /// Worth a look.
    Medium,
    /// Fix soon.
    High,
    /// Fix now.
    Critical,
}

impl Severity {
    /// Parses `low|medium|high|critical`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Which data a rule reads (and so which failure errors it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// DescribeSecurityGroups.
    SecurityGroups,
    /// DescribeInstances.
    Instances,
    /// DescribeInstances + DescribeImages.
    Images,
    /// Classic DescribeLoadBalancers.
    Elb,
    /// ELBv2 DescribeLoadBalancers + DescribeListeners.
    Elbv2,
    /// Classic and v2.
    AnyElb,
    /// IAM (account-wide).
    Iam,
    /// S3 (account-wide).
    S3,
    /// CloudTrail (account-wide).
    CloudTrail,
}

impl Source {
    /// Account-wide sources report in region `global`.
    pub fn global(self) -> bool {
        matches!(self, Source::Iam | Source::S3 | Source::CloudTrail)
    }
}

/// A rule's description.
#[derive(Debug)]
pub struct RuleInfo {
    /// Id (reddalert's name or Prowler's check id).
    pub id: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// What it reads.
    pub source: Source,
    /// One line: what is wrong.
    pub explanation: &'static str,
    /// One line: how to fix it.
    pub remediation: &'static str,
}

macro_rules! rule {
    ($id:literal, $sev:ident, $src:ident, $exp:literal, $rem:literal) => {
        RuleInfo {
            id: $id,
            severity: Severity::$sev,
            source: Source::$src,
            explanation: $exp,
            remediation: $rem,
        }
    };
}

/// Every rule.
pub const RULES: &[RuleInfo] =
    &[
        rule!("secgroup_suspicious_ingress", High, SecurityGroups,
        "A security group lets a non-whitelisted range in on a port range or an unexpected port.",
        "Narrow the permission, or whitelist it in [audit] whitelisted_entries if intended."),
        rule!(
            "elb_listener_port_not_allowed",
            Medium,
            AnyElb,
            "A load balancer listens on a port outside elb_allowed_ports.",
            "Remove the listener or add the port to [audit] elb_allowed_ports."
        ),
        rule!(
            "ec2_new_ami_in_use",
            Medium,
            Images,
            "Instances run from an AMI not seen before.",
            "Check who built the AMI; tag approved images with one of [audit] allowed_tags."
        ),
        rule!(
            "iam_user_group_added",
            Medium,
            Iam,
            "An IAM user appeared or joined a group since the last run.",
            "Confirm the change was intended; allow service users by name in [audit] allowed."
        ),
        rule!(
            "ec2_securitygroup_allow_ingress_from_internet_to_all_ports",
            Critical,
            SecurityGroups,
            "A security group lets the whole internet in on every port.",
            "Remove the 0.0.0.0/0 or ::/0 all-ports permission."
        ),
        rule!(
            "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22",
            High,
            SecurityGroups,
            "A security group lets the whole internet reach SSH (TCP 22).",
            "Restrict port 22 to known ranges or use Session Manager."
        ),
        rule!(
            "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_3389",
            High,
            SecurityGroups,
            "A security group lets the whole internet reach RDP (TCP 3389).",
            "Restrict port 3389 to known ranges."
        ),
        rule!(
            "ec2_securitygroup_allow_ingress_from_internet_to_high_risk_tcp_ports",
            High,
            SecurityGroups,
            "A security group lets the whole internet reach high-risk TCP ports.",
            "Restrict those ports to known ranges."
        ),
        rule!(
            "ec2_securitygroup_default_restrict_traffic",
            Medium,
            SecurityGroups,
            "A VPC's default security group allows traffic.",
            "Remove every inbound and outbound rule of default security groups."
        ),
        rule!(
            "ec2_securitygroup_allow_wide_open_public_ipv4",
            High,
            SecurityGroups,
            "A security group admits a wide public IPv4 range (shorter than /24).",
            "Replace the range with the addresses that need access."
        ),
        rule!(
            "ec2_ami_public",
            Critical,
            Images,
            "An AMI of this account is public.",
            "Make the AMI private (remove the 'all' launch permission)."
        ),
        rule!(
            "ec2_instance_imdsv2_enabled",
            Medium,
            Instances,
            "An instance does not require IMDSv2 session tokens.",
            "Set the instance's metadata option HttpTokens=required."
        ),
        rule!(
            "elb_ssl_listeners",
            Medium,
            Elb,
            "A classic load balancer has a listener without TLS.",
            "Use HTTPS or SSL listeners."
        ),
        rule!(
            "elbv2_ssl_listeners",
            Medium,
            Elbv2,
            "An application load balancer has a plain HTTP listener.",
            "Use HTTPS listeners (redirect HTTP to HTTPS)."
        ),
        rule!(
            "elb_internet_facing",
            Medium,
            Elb,
            "A classic load balancer is internet-facing.",
            "Make it internal unless it must serve the internet."
        ),
        rule!(
            "iam_user_mfa_enabled_console_access",
            High,
            Iam,
            "An IAM user with a console password has no MFA device.",
            "Enable MFA for the user, or remove the console password."
        ),
        rule!(
            "iam_rotate_access_key_90_days",
            Medium,
            Iam,
            "An active access key is older than max_key_age_days.",
            "Rotate the key and delete the old one."
        ),
        rule!(
            "iam_group_administrator_access_policy",
            High,
            Iam,
            "An IAM group has AdministratorAccess attached.",
            "Grant least-privilege policies instead."
        ),
        rule!(
            "iam_user_administrator_access_policy",
            High,
            Iam,
            "An IAM user has AdministratorAccess attached.",
            "Grant least-privilege policies instead."
        ),
        rule!(
            "iam_no_root_access_key",
            Critical,
            Iam,
            "The root user has an access key.",
            "Delete the root access keys."
        ),
        rule!(
            "iam_root_mfa_enabled",
            Critical,
            Iam,
            "The root user has no MFA.",
            "Enable MFA on the root user."
        ),
        rule!(
            "cloudtrail_multi_region_enabled",
            High,
            CloudTrail,
            "No logging multi-region CloudTrail trail.",
            "Create a multi-region trail and start logging."
        ),
        rule!(
            "cloudtrail_log_file_validation_enabled",
            Medium,
            CloudTrail,
            "A trail does not validate its log files.",
            "Enable log file validation on the trail."
        ),
        rule!(
            "s3_bucket_policy_public_write_access",
            Critical,
            S3,
            "A bucket policy lets anyone write.",
            "Remove the statement granting write actions to Principal \"*\"."
        ),
    ];

/// A rule's description by id.
pub fn info(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}

/// One finding of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Account id.
    pub account: String,
    /// Region, or `global`.
    pub region: String,
    /// Rule id.
    pub rule: String,
    /// The resource (`sg-… (name)`, user, bucket…).
    pub subject: String,
    /// What in the resource (permission, port…); part of the key.
    pub detail: String,
    /// Severity.
    pub severity: Severity,
    /// The facts that matter; their change is a `changed` event.
    pub data: serde_json::Value,
}

impl Finding {
    /// The stable key.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.account, self.region, self.rule, self.subject, self.detail
        )
    }
}

/// The output of the rules over one account: findings and the scopes that errored.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Findings.
    pub findings: Vec<Finding>,
    /// (account, region, rule) → error, for rules whose source failed.
    pub errored: BTreeMap<(String, String, String), String>,
    /// (account, region) pairs that were read (findings elsewhere are left alone).
    pub covered: BTreeSet<(String, String)>,
}

/// Whether `net` lies within one of `nets`.
fn inside(net: &ipnet::IpNet, nets: &[ipnet::IpNet]) -> bool {
    nets.iter().any(|w| w.contains(net))
}

fn internet(n: &ipnet::IpNet) -> bool {
    n.prefix_len() == 0
}

fn covers_port(p: &Permission, port: i32) -> bool {
    match (p.from_port, p.to_port) {
        (Some(a), Some(b)) => (a == -1 && b == -1) || (a <= port && port <= b),
        _ => true,
    }
}

fn port_spec(p: &Permission) -> String {
    match (p.from_port, p.to_port) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(-1), Some(-1)) | (None, _) | (_, None) => "all".to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
    }
}

/// `sg-… (name)`, reddalert's way of naming a group.
pub fn sg_subject(g: &SecurityGroup) -> String {
    format!("{} ({})", g.id, g.name)
}

struct Ctx<'a> {
    cfg: &'a AuditConfig,
    account: &'a str,
    now: jiff::Timestamp,
    out: &'a mut Evaluation,
}

impl Ctx<'_> {
    fn on(&self, rule: &str) -> bool {
        !self.cfg.disabled.iter().any(|d| d == rule)
    }
    fn push(
        &mut self,
        region: &str,
        rule: &'static str,
        subject: String,
        detail: String,
        data: serde_json::Value,
    ) {
        if !self.on(rule) {
            return;
        }
        let severity = self
            .cfg
            .severity
            .get(rule)
            .and_then(|s| Severity::parse(s))
            .unwrap_or_else(|| info(rule).map_or(Severity::Medium, |i| i.severity));
        self.out.findings.push(Finding {
            account: self.account.to_string(),
            region: region.to_string(),
            rule: rule.to_string(),
            subject,
            detail,
            severity,
            data,
        });
    }
    fn errored(&mut self, region: &str, source: Source, err: &str) {
        for r in RULES.iter().filter(|r| {
            r.source == source
                || (r.source == Source::AnyElb && matches!(source, Source::Elb | Source::Elbv2))
                || (source == Source::Instances && r.source == Source::Images)
        }) {
            self.out.errored.insert(
                (self.account.into(), region.into(), r.id.into()),
                err.to_string(),
            );
        }
    }
}

/// Runs every enabled rule over one account's inventory.
pub fn evaluate(
    inv: &AccountInventory,
    cfg: &AuditConfig,
    now: jiff::Timestamp,
    out: &mut Evaluation,
) {
    let mut cx = Ctx {
        cfg,
        account: &inv.account,
        now,
        out,
    };
    for r in &inv.regions {
        cx.out
            .covered
            .insert((inv.account.clone(), r.region.clone()));
        region_rules(&mut cx, r);
    }
    cx.out
        .covered
        .insert((inv.account.clone(), "global".into()));
    match &inv.iam {
        Ok(iam) => iam_rules(&mut cx, iam),
        Err(e) => cx.errored("global", Source::Iam, e),
    }
    match &inv.buckets {
        Ok(bs) => {
            for b in bs {
                if let Some(p) = &b.policy {
                    let actions = public_write_actions(p);
                    if !actions.is_empty() {
                        cx.push(
                            "global",
                            "s3_bucket_policy_public_write_access",
                            b.name.clone(),
                            String::new(),
                            json!({"actions": actions}),
                        );
                    }
                }
            }
        }
        Err(e) => cx.errored("global", Source::S3, e),
    }
    match &inv.trails {
        Ok(ts) => {
            if !ts.iter().any(|t| t.multi_region && t.logging) {
                cx.push(
                    "global",
                    "cloudtrail_multi_region_enabled",
                    inv.account.clone(),
                    String::new(),
                    json!({"trails": ts.len()}),
                );
            }
            for t in ts.iter().filter(|t| !t.log_file_validation) {
                cx.push(
                    "global",
                    "cloudtrail_log_file_validation_enabled",
                    t.name.clone(),
                    String::new(),
                    json!({}),
                );
            }
        }
        Err(e) => cx.errored("global", Source::CloudTrail, e),
    }
}

fn region_rules(cx: &mut Ctx<'_>, r: &RegionInventory) {
    let region = r.region.as_str();
    match &r.security_groups {
        Ok(gs) => {
            for g in gs {
                sg_rules(cx, region, g);
            }
        }
        Err(e) => cx.errored(region, Source::SecurityGroups, e),
    }
    match &r.instances {
        Ok(is) => {
            for i in is
                .iter()
                .filter(|i| i.http_tokens.as_deref() != Some("required"))
            {
                cx.push(
                    region,
                    "ec2_instance_imdsv2_enabled",
                    i.id.clone(),
                    String::new(),
                    json!({"http_tokens": i.http_tokens}),
                );
            }
            match &r.images {
                Ok(images) => {
                    let mut in_use: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                    for i in is {
                        in_use.entry(&i.image_id).or_default().push(&i.id);
                    }
                    for (ami, _instances) in in_use {
                        let img = images.iter().find(|m| m.id == ami);
                        let allowed = img.is_some_and(|m| {
                            m.tags.iter().any(|(k, v)| {
                                cx.cfg.allowed_tags.iter().any(|t| match t.split_once('=') {
                                    Some((tk, tv)) => tk == k && tv == v,
                                    None => t == k,
                                })
                            })
                        });
                        if !allowed {
                            let name = img.map(|m| m.name.clone()).unwrap_or_default();
                            cx.push(
                                region,
                                "ec2_new_ami_in_use",
                                ami.to_string(),
                                String::new(),
                                json!({"name": name}),
                            );
                        }
                    }
                    for m in images.iter().filter(|m| m.owned && m.public) {
                        cx.push(
                            region,
                            "ec2_ami_public",
                            m.id.clone(),
                            String::new(),
                            json!({"name": m.name}),
                        );
                    }
                }
                Err(e) => cx.errored(region, Source::Images, e),
            }
        }
        Err(e) => cx.errored(region, Source::Instances, e),
    }
    let lb_rules =
        |cx: &mut Ctx<'_>, lbs: &Result<Vec<crate::collect::LoadBalancer>, String>, src: Source| {
            match lbs {
                Ok(lbs) => {
                    for lb in lbs {
                        for l in &lb.listeners {
                            if !cx.cfg.elb_allowed_ports.contains(&l.port) {
                                cx.push(
                                region,
                                "elb_listener_port_not_allowed",
                                lb.name.clone(),
                                l.port.to_string(),
                                json!({"protocol": l.protocol, "port": l.port, "kind": lb.kind}),
                            );
                            }
                        }
                        if src == Source::Elb {
                            let plain: Vec<String> = lb
                                .listeners
                                .iter()
                                .filter(|l| !matches!(l.protocol.as_str(), "HTTPS" | "SSL"))
                                .map(|l| format!("{} {}", l.protocol, l.port))
                                .collect();
                            if !plain.is_empty() {
                                cx.push(
                                    region,
                                    "elb_ssl_listeners",
                                    lb.name.clone(),
                                    String::new(),
                                    json!({"listeners": plain}),
                                );
                            }
                            if lb.scheme == "internet-facing" {
                                cx.push(
                                    region,
                                    "elb_internet_facing",
                                    lb.name.clone(),
                                    String::new(),
                                    json!({}),
                                );
                            }
                        } else if lb.kind == "application" {
                            let plain: Vec<String> = lb
                                .listeners
                                .iter()
                                .filter(|l| l.protocol == "HTTP" && !l.redirects_to_https)
                                .map(|l| format!("{} {}", l.protocol, l.port))
                                .collect();
                            if !plain.is_empty() {
                                cx.push(
                                    region,
                                    "elbv2_ssl_listeners",
                                    lb.name.clone(),
                                    String::new(),
                                    json!({"listeners": plain}),
                                );
                            }
                        }
                    }
                }
                Err(e) => cx.errored(region, src, e),
            }
        };
    lb_rules(cx, &r.elb, Source::Elb);
    lb_rules(cx, &r.elbv2, Source::Elbv2);
}

fn sg_rules(cx: &mut Ctx<'_>, region: &str, g: &SecurityGroup) {
    let subject = sg_subject(g);
    let cfg = cx.cfg;
    let entries = cfg.whitelisted_entries.get(&subject);
    // reddalert's rule, one finding per (protocol, ports).
    for p in &g.ingress {
        if cfg.allowed_protocols.iter().any(|a| a == &p.protocol) {
            continue;
        }
        let spec = port_spec(p);
        let single = matches!((p.from_port, p.to_port), (Some(a), Some(b)) if a == b && a != -1);
        if single && cfg.allowed_ports.contains(&p.from_port.unwrap_or(-1)) {
            continue;
        }
        let bad: Vec<String> = p
            .ranges
            .iter()
            .filter(|n| !inside(n, &cfg.whitelisted_ips))
            .filter(|n| {
                !entries.is_some_and(|e| {
                    e.iter().any(|(k, nets)| {
                        let (a, b) = parse_port_key(k).unwrap_or((i32::MIN, i32::MIN));
                        let spec_range = match (p.from_port, p.to_port) {
                            (Some(f), Some(t)) if f != -1 => (f, t),
                            _ => (0, 65535),
                        };
                        a <= spec_range.0 && spec_range.1 <= b && inside(n, nets)
                    })
                })
            })
            .map(|n| n.to_string())
            .collect();
        if !bad.is_empty() {
            cx.push(
                region,
                "secgroup_suspicious_ingress",
                subject.clone(),
                format!("{} {spec}", p.protocol),
                json!({"protocol": p.protocol, "ports": spec, "ranges": bad}),
            );
        }
    }
    // Internet-wide checks.
    let open: Vec<&Permission> = g
        .ingress
        .iter()
        .filter(|p| p.ranges.iter().any(internet))
        .collect();
    let tcp = |p: &Permission| p.protocol == "tcp" || p.protocol == "-1";
    if open.iter().any(|p| {
        p.protocol == "-1" || (p.from_port.unwrap_or(0) <= 0 && p.to_port.unwrap_or(65535) >= 65535)
    }) {
        cx.push(
            region,
            "ec2_securitygroup_allow_ingress_from_internet_to_all_ports",
            subject.clone(),
            String::new(),
            json!({}),
        );
    }
    for (port, rule) in [
        (
            22,
            "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22",
        ),
        (
            3389,
            "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_3389",
        ),
    ] {
        if open.iter().any(|p| tcp(p) && covers_port(p, port)) {
            cx.push(
                region,
                rule,
                subject.clone(),
                String::new(),
                json!({"port": port}),
            );
        }
    }
    let risky: Vec<i32> = cfg
        .high_risk_tcp_ports
        .iter()
        .copied()
        .filter(|&port| open.iter().any(|p| tcp(p) && covers_port(p, port)))
        .collect();
    if !risky.is_empty() {
        cx.push(
            region,
            "ec2_securitygroup_allow_ingress_from_internet_to_high_risk_tcp_ports",
            subject.clone(),
            String::new(),
            json!({"ports": risky}),
        );
    }
    if g.name == "default" && (!g.ingress.is_empty() || !g.egress.is_empty()) {
        cx.push(
            region,
            "ec2_securitygroup_default_restrict_traffic",
            subject.clone(),
            String::new(),
            json!({"ingress": g.ingress.len(), "egress": g.egress.len()}),
        );
    }
    let mut wide: Vec<String> = g
        .ingress
        .iter()
        .flat_map(|p| p.ranges.iter())
        .filter(|n| match n {
            ipnet::IpNet::V4(v4) => {
                let a = v4.network();
                let shared = a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64;
                let special = a.is_private() || a.is_loopback() || a.is_link_local() || shared;
                (1..24).contains(&v4.prefix_len()) && !special
            }
            ipnet::IpNet::V6(_) => false,
        })
        .map(|n| n.to_string())
        .collect();
    wide.sort();
    wide.dedup();
    if !wide.is_empty() {
        cx.push(
            region,
            "ec2_securitygroup_allow_wide_open_public_ipv4",
            subject,
            String::new(),
            json!({"ranges": wide}),
        );
    }
}

fn iam_rules(cx: &mut Ctx<'_>, iam: &crate::collect::Iam) {
    let allowed: Vec<regex::Regex> = cx
        .cfg
        .allowed
        .iter()
        .filter_map(|r| regex::Regex::new(r).ok())
        .collect();
    let g = "global";
    for u in &iam.users {
        if !allowed.iter().any(|re| re.is_match(&u.name)) {
            let mut groups = u.groups.clone();
            groups.sort();
            cx.push(
                g,
                "iam_user_group_added",
                u.name.clone(),
                String::new(),
                json!({"groups": groups}),
            );
        }
        if u.password_enabled && !u.mfa_active {
            cx.push(
                g,
                "iam_user_mfa_enabled_console_access",
                u.name.clone(),
                String::new(),
                json!({}),
            );
        }
        if u.policies.iter().any(|p| p == "AdministratorAccess") {
            cx.push(
                g,
                "iam_user_administrator_access_policy",
                u.name.clone(),
                String::new(),
                json!({}),
            );
        }
        let max = cx.cfg.max_key_age_days;
        let old = u
            .active_keys_rotated
            .iter()
            .filter(|r| {
                r.parse::<jiff::Timestamp>()
                    .is_ok_and(|t| cx.now.duration_since(t).as_secs() > max * 86400)
            })
            .count();
        if old > 0 {
            cx.push(
                g,
                "iam_rotate_access_key_90_days",
                u.name.clone(),
                String::new(),
                json!({"old_keys": old}),
            );
        }
    }
    for grp in &iam.groups {
        if grp.policies.iter().any(|p| p == "AdministratorAccess") {
            cx.push(
                g,
                "iam_group_administrator_access_policy",
                grp.name.clone(),
                String::new(),
                json!({}),
            );
        }
    }
    let account = cx.account.to_string();
    if iam.root_keys {
        cx.push(
            g,
            "iam_no_root_access_key",
            account.clone(),
            String::new(),
            json!({}),
        );
    }
    if !iam.root_mfa {
        cx.push(g, "iam_root_mfa_enabled", account, String::new(), json!({}));
    }
}

/// Write actions a policy grants to everyone without a condition.
pub fn public_write_actions(policy: &serde_json::Value) -> Vec<String> {
    let as_list = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let stmts = match policy.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(s @ serde_json::Value::Object(_)) => vec![s.clone()],
        _ => vec![],
    };
    let mut out = Vec::new();
    for s in stmts {
        if s.get("Effect").and_then(|e| e.as_str()) != Some("Allow") || s.get("Condition").is_some()
        {
            continue;
        }
        let everyone = match s.get("Principal") {
            Some(serde_json::Value::String(p)) => p == "*",
            Some(serde_json::Value::Object(o)) => as_list(o.get("AWS")).iter().any(|p| p == "*"),
            _ => false,
        };
        if !everyone {
            continue;
        }
        for a in as_list(s.get("Action")) {
            let l = a.to_ascii_lowercase();
            if l == "*"
                || l == "s3:*"
                || l.starts_with("s3:put")
                || l.starts_with("s3:delete")
                || l == "s3:restoreobject"
            {
                out.push(a);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{AccountInventory, Iam, RegionInventory, User};

    fn perm(proto: &str, from: i32, to: i32, cidrs: &[&str]) -> Permission {
        Permission {
            protocol: proto.into(),
            from_port: Some(from),
            to_port: Some(to),
            ranges: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            groups: vec![],
        }
    }

    fn inv(groups: Vec<SecurityGroup>, iam: Iam) -> AccountInventory {
        AccountInventory {
            account: "1".into(),
            regions: vec![RegionInventory {
                region: "r".into(),
                security_groups: Ok(groups),
                instances: Ok(vec![]),
                images: Ok(vec![]),
                elb: Ok(vec![]),
                elbv2: Ok(vec![]),
            }],
            iam: Ok(iam),
            buckets: Ok(vec![]),
            trails: Ok(vec![]),
        }
    }

    fn eval(cfg: &AuditConfig, i: &AccountInventory, now: &str) -> Vec<Finding> {
        let mut out = Evaluation::default();
        evaluate(i, cfg, now.parse().unwrap(), &mut out);
        out.findings
    }

    fn suspicious(cfg_toml: &str, perms: Vec<Permission>) -> Vec<String> {
        let cfg = AuditConfig::from_toml(cfg_toml).unwrap();
        let g = SecurityGroup {
            id: "sg-1".into(),
            name: "web".into(),
            vpc_id: None,
            ingress: perms,
            egress: vec![],
        };
        eval(&cfg, &inv(vec![g], Iam::default()), "2026-01-01T00:00:00Z")
            .into_iter()
            .filter(|f| f.rule == "secgroup_suspicious_ingress")
            .map(|f| format!("{} {}", f.detail, f.data["ranges"]))
            .collect()
    }

    #[test]
    fn reddalert_ingress_options() {
        // Defaults: allowed single ports and icmp are fine; other ports and ranges are not.
        let got = suspicious(
            "",
            vec![
                perm("tcp", 22, 22, &["1.2.3.4/32"]),
                perm("icmp", -1, -1, &["0.0.0.0/0"]),
                perm("tcp", 8080, 8080, &["1.2.3.4/32"]),
                perm("udp", 1000, 2000, &["10.0.0.0/8"]),
            ],
        );
        assert_eq!(
            got,
            [
                "tcp 8080 [\"1.2.3.4/32\"]",
                "udp 1000-2000 [\"10.0.0.0/8\"]"
            ]
        );
        // whitelisted_ips: a range inside one is fine, a wider one is not.
        let got = suspicious(
            "[audit]\nwhitelisted_ips = [\"10.0.0.0/8\"]\n",
            vec![perm("tcp", 1000, 2000, &["10.1.0.0/16", "0.0.0.0/0"])],
        );
        assert_eq!(got, ["tcp 1000-2000 [\"0.0.0.0/0\"]"]);
        // whitelisted_entries: the entry's port (range) must cover the permission's.
        let cfg = "[audit.whitelisted_entries.\"sg-1 (web)\"]\n\"1000-3000\" = [\"192.168.0.0/16\"]\n\"8080\" = [\"5.6.7.8/32\"]\n";
        let got = suspicious(
            cfg,
            vec![
                perm("tcp", 1000, 2000, &["192.168.1.0/24"]),
                perm("tcp", 8080, 8080, &["5.6.7.8/32", "5.6.7.9/32"]),
                perm("tcp", 999, 2000, &["192.168.1.0/24"]),
            ],
        );
        assert_eq!(
            got,
            [
                "tcp 8080 [\"5.6.7.9/32\"]",
                "tcp 999-2000 [\"192.168.1.0/24\"]"
            ]
        );
        // Another group's entry does not apply; allowed_protocols and allowed_ports are tunable.
        let got = suspicious(
            "[audit]\nallowed_protocols = [\"icmp\", \"udp\"]\nallowed_ports = [8080]\n",
            vec![
                perm("udp", 1, 65535, &["0.0.0.0/0"]),
                perm("tcp", 8080, 8080, &["0.0.0.0/0"]),
                perm("tcp", 22, 22, &["0.0.0.0/0"]),
            ],
        );
        assert_eq!(got, ["tcp 22 [\"0.0.0.0/0\"]"]);
    }

    #[test]
    fn internet_checks_and_disabling() {
        let cfg = AuditConfig::default();
        let g = SecurityGroup {
            id: "sg-2".into(),
            name: "open".into(),
            vpc_id: None,
            ingress: vec![
                perm("-1", -1, -1, &["::/0"]),
                perm("tcp", 3389, 3389, &["0.0.0.0/0"]),
            ],
            egress: vec![],
        };
        let rules: BTreeSet<String> = eval(
            &cfg,
            &inv(vec![g.clone()], Iam::default()),
            "2026-01-01T00:00:00Z",
        )
        .into_iter()
        .filter(|f| f.subject == "sg-2 (open)")
        .map(|f| f.rule)
        .collect();
        for r in [
            "ec2_securitygroup_allow_ingress_from_internet_to_all_ports",
            "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22",
            "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_3389",
            "ec2_securitygroup_allow_ingress_from_internet_to_high_risk_tcp_ports",
            "secgroup_suspicious_ingress",
        ] {
            assert!(rules.contains(r), "{r} in {rules:?}");
        }
        let cfg = AuditConfig::from_toml(
            "[audit]\ndisabled = [\"secgroup_suspicious_ingress\"]\nseverity = { ec2_securitygroup_allow_ingress_from_internet_to_all_ports = \"low\" }\n",
        )
        .unwrap();
        let f = eval(&cfg, &inv(vec![g], Iam::default()), "2026-01-01T00:00:00Z");
        assert!(!f.iter().any(|f| f.rule == "secgroup_suspicious_ingress"));
        let all = f
            .iter()
            .find(|f| f.rule == "ec2_securitygroup_allow_ingress_from_internet_to_all_ports")
            .unwrap();
        assert_eq!(all.severity, Severity::Low);
    }

    #[test]
    fn iam_rules_with_injected_now() {
        let iam = Iam {
            users: vec![
                User {
                    name: "old-key".into(),
                    groups: vec!["b".into(), "a".into()],
                    policies: vec![],
                    password_enabled: true,
                    mfa_active: true,
                    active_keys_rotated: vec!["2025-01-01T00:00:00+00:00".into()],
                },
                User {
                    name: "ci-deploy".into(),
                    groups: vec![],
                    policies: vec!["AdministratorAccess".into()],
                    password_enabled: true,
                    mfa_active: false,
                    active_keys_rotated: vec!["2025-12-20T00:00:00+00:00".into()],
                },
            ],
            groups: vec![],
            root_mfa: true,
            root_keys: true,
        };
        let cfg = AuditConfig::from_toml("[audit]\nallowed = [\"^ci-\"]\n").unwrap();
        let f = eval(&cfg, &inv(vec![], iam), "2026-01-01T00:00:00Z");
        let got: BTreeSet<(String, String)> = f
            .iter()
            .map(|f| (f.rule.clone(), f.subject.clone()))
            .collect();
        let want: BTreeSet<(String, String)> = [
            ("iam_user_group_added", "old-key"),
            ("iam_rotate_access_key_90_days", "old-key"),
            ("iam_user_mfa_enabled_console_access", "ci-deploy"),
            ("iam_user_administrator_access_policy", "ci-deploy"),
            ("iam_no_root_access_key", "1"),
            ("cloudtrail_multi_region_enabled", "1"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
        let groups = &f
            .iter()
            .find(|f| f.rule == "iam_user_group_added")
            .unwrap()
            .data;
        assert_eq!(groups["groups"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn public_write_policies() {
        let p = |v: serde_json::Value| public_write_actions(&v);
        assert_eq!(
            p(
                serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject", "s3:PutObject"]}]})
            ),
            ["s3:PutObject"]
        );
        assert_eq!(
            p(
                serde_json::json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*"}})
            ),
            ["s3:*"]
        );
        assert!(p(serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Condition": {"IpAddress": {}}}]})).is_empty());
        assert!(p(serde_json::json!({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject"}]})).is_empty());
        assert!(p(serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:PutObject"}]})).is_empty());
    }
}
