//! palisade-audit against a scripted AWS stand-in for what moto cannot do: paging (moto ignores
//! page sizes), throttling, AccessDenied, malformed and oversized answers, a dead endpoint, and
//! an Elasticsearch bulk endpoint with item errors.

mod common;

use common::Seen;
use palisade_audit::client::ClientOptions;
use palisade_audit::run::{run, RunOptions};
use palisade_audit::state::{diff, State};
use palisade_audit::AuditConfig;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENV: Mutex<()> = Mutex::new(());

fn opts(url: &str) -> RunOptions {
    RunOptions {
        regions: vec!["us-east-1".into()],
        profile: None,
        client: ClientOptions {
            endpoint: Some(url.to_string()),
            backoff: Duration::from_millis(1),
            ..ClientOptions::default()
        },
        now: jiff::Timestamp::now(),
    }
}

fn audit(o: &RunOptions) -> Result<palisade_audit::run::RunOutcome, palisade_audit::AuditError> {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDSTUB");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "stub-secret");
    std::env::remove_var("AWS_SESSION_TOKEN");
    run(&AuditConfig::default(), o)
}

/// The operation a request asks for.
fn operation(r: &Seen) -> String {
    if let Some(a) = r.param("Action") {
        let v = r.param("Version").unwrap_or_default();
        return if a == "DescribeLoadBalancers" && v == "2015-12-01" {
            "v2:DescribeLoadBalancers".into()
        } else {
            a
        };
    }
    if let Some((_, t)) = r.headers.iter().find(|(k, _)| k == "x-amz-target") {
        return t.rsplit('.').next().unwrap().to_string();
    }
    if r.line.starts_with("GET / ") {
        return "ListBuckets".into();
    }
    if r.line.contains("?policy") {
        return "GetBucketPolicy".into();
    }
    if r.line.contains("?location") {
        return "GetBucketLocation".into();
    }
    "?".into()
}

fn sg_page(ids: &[&str], next: Option<&str>) -> String {
    let mut s = String::from(
        "<DescribeSecurityGroupsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><securityGroupInfo>",
    );
    for id in ids {
        s.push_str(&format!(
            "<item><groupId>{id}</groupId><groupName>n-{id}</groupName><ipPermissions><item>\
             <ipProtocol>tcp</ipProtocol><fromPort>8080</fromPort><toPort>8080</toPort>\
             <ipRanges><item><cidrIp>10.0.0.0/8</cidrIp></item></ipRanges></item></ipPermissions>\
             <ipPermissionsEgress/></item>"
        ));
    }
    s.push_str("</securityGroupInfo>");
    if let Some(n) = next {
        s.push_str(&format!("<nextToken>{n}</nextToken>"));
    }
    s.push_str("</DescribeSecurityGroupsResponse>");
    s
}

/// A healthy, small account, paged: 3 pages of security groups, 2 of IAM users, 2 of classic
/// load balancers.
fn healthy(op: &str, r: &Seen) -> (u16, String) {
    let ok = |s: &str| (200, s.to_string());
    match op {
        "GetCallerIdentity" => ok("<GetCallerIdentityResponse><GetCallerIdentityResult><Account>999988887777</Account></GetCallerIdentityResult></GetCallerIdentityResponse>"),
        "DescribeSecurityGroups" => match r.param("NextToken").as_deref() {
            None => ok(&sg_page(&["sg-1", "sg-2"], Some("t1"))),
            Some("t1") => ok(&sg_page(&["sg-3"], Some("t2"))),
            Some("t2") => ok(&sg_page(&["sg-4"], None)),
            Some(t) => (400, format!("<Response><Errors><Error><Code>InvalidToken</Code><Message>{t}</Message></Error></Errors></Response>")),
        },
        "DescribeInstances" => ok("<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"),
        "DescribeImages" => ok("<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>"),
        "DescribeLoadBalancers" => match r.param("Marker").as_deref() {
            None => ok("<DescribeLoadBalancersResponse><DescribeLoadBalancersResult><LoadBalancerDescriptions><member><LoadBalancerName>a</LoadBalancerName><Scheme>internal</Scheme><ListenerDescriptions/></member></LoadBalancerDescriptions><NextMarker>m1</NextMarker></DescribeLoadBalancersResult></DescribeLoadBalancersResponse>"),
            _ => ok("<DescribeLoadBalancersResponse><DescribeLoadBalancersResult><LoadBalancerDescriptions><member><LoadBalancerName>b</LoadBalancerName><Scheme>internal</Scheme><ListenerDescriptions/></member></LoadBalancerDescriptions></DescribeLoadBalancersResult></DescribeLoadBalancersResponse>"),
        },
        "v2:DescribeLoadBalancers" => ok("<DescribeLoadBalancersResponse><DescribeLoadBalancersResult><LoadBalancers/></DescribeLoadBalancersResult></DescribeLoadBalancersResponse>"),
        "GetAccountAuthorizationDetails" => match r.param("Marker").as_deref() {
            None => ok("<R><GetAccountAuthorizationDetailsResult><IsTruncated>true</IsTruncated><Marker>u1</Marker><UserDetailList><member><UserName>u-a</UserName><GroupList/></member></UserDetailList><GroupDetailList/></GetAccountAuthorizationDetailsResult></R>"),
            _ => ok("<R><GetAccountAuthorizationDetailsResult><IsTruncated>false</IsTruncated><UserDetailList><member><UserName>u-b</UserName><GroupList/></member></UserDetailList><GroupDetailList/></GetAccountAuthorizationDetailsResult></R>"),
        },
        "GetAccountSummary" => ok("<R><GetAccountSummaryResult><SummaryMap><entry><key>AccountMFAEnabled</key><value>1</value></entry><entry><key>AccountAccessKeysPresent</key><value>0</value></entry></SummaryMap></GetAccountSummaryResult></R>"),
        "GenerateCredentialReport" => ok("<R><State>COMPLETE</State></R>"),
        // "user,password_enabled,mfa_active\n"
        "GetCredentialReport" => ok("<R><GetCredentialReportResult><Content>dXNlcixwYXNzd29yZF9lbmFibGVkLG1mYV9hY3RpdmUK</Content></GetCredentialReportResult></R>"),
        "ListBuckets" => ok("<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>"),
        "DescribeTrails" => ok(r#"{"trailList":[{"Name":"t","TrailARN":"arn:t","IsMultiRegionTrail":true,"LogFileValidationEnabled":true}]}"#),
        "GetTrailStatus" => ok(r#"{"IsLogging":true}"#),
        _ => (400, format!("<Response><Errors><Error><Code>Unknown</Code><Message>{op}</Message></Error></Errors></Response>")),
    }
}

/// A stub AWS: `over(op, request, how many times op was asked before)` may replace the healthy
/// answer.
fn aws(
    over: impl Fn(&str, &Seen, usize) -> Option<(u16, String)> + Send + 'static,
) -> common::Stub {
    let counts: Mutex<HashMap<String, usize>> = Mutex::default();
    common::stub(move |r, _| {
        let op = operation(r);
        let n = {
            let mut c = counts.lock().unwrap();
            let e = c.entry(op.clone()).or_default();
            *e += 1;
            *e - 1
        };
        over(&op, r, n).unwrap_or_else(|| healthy(&op, r))
    })
}

fn calls(stub: &common::Stub, op: &str) -> usize {
    stub.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| operation(r) == op)
        .count()
}

#[test]
fn pagination_makes_exactly_the_calls_pages_need() {
    let s = aws(|_, _, _| None);
    let out = audit(&opts(&s.url)).unwrap();
    assert!(
        out.evaluation.errored.is_empty(),
        "{:?}",
        out.evaluation.errored
    );
    assert_eq!(calls(&s, "DescribeSecurityGroups"), 3);
    assert_eq!(out.calls["us-east-1/ec2/DescribeSecurityGroups"], 3);
    assert_eq!(calls(&s, "GetAccountAuthorizationDetails"), 2);
    assert_eq!(calls(&s, "DescribeLoadBalancers"), 2);
    let tokens: Vec<Option<String>> = s
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| operation(r) == "DescribeSecurityGroups")
        .map(|r| r.param("NextToken"))
        .collect();
    assert_eq!(tokens, vec![None, Some("t1".into()), Some("t2".into())]);
    let mut sgs: Vec<&str> = out
        .evaluation
        .findings
        .iter()
        .filter(|f| f.rule == "secgroup_suspicious_ingress")
        .map(|f| f.subject.as_str())
        .collect();
    sgs.sort();
    assert_eq!(
        sgs,
        [
            "sg-1 (n-sg-1)",
            "sg-2 (n-sg-2)",
            "sg-3 (n-sg-3)",
            "sg-4 (n-sg-4)"
        ]
    );
    let users: Vec<&str> = out
        .evaluation
        .findings
        .iter()
        .filter(|f| f.rule == "iam_user_group_added")
        .map(|f| f.subject.as_str())
        .collect();
    assert_eq!(users, ["u-a", "u-b"]);
    // Every request was signed, with the key id and never the secret.
    for r in s.seen.lock().unwrap().iter() {
        let auth = &r
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSTUB/"),
            "{auth}"
        );
        assert!(!r.body.contains("stub-secret") && !auth.contains("stub-secret"));
    }
}

#[test]
fn throttling_is_retried() {
    let s = aws(|op, _, n| {
        match (op, n) {
        ("DescribeSecurityGroups", 0) => Some((
            400,
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow</Message></Error></Errors></Response>".into(),
        )),
        ("DescribeSecurityGroups", 1) => Some((503, "unavailable".into())),
        ("GetAccountSummary", 0) => Some((
            400,
            "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into(),
        )),
        _ => None,
    }
    });
    let out = audit(&opts(&s.url)).unwrap();
    assert!(
        out.evaluation.errored.is_empty(),
        "{:?}",
        out.evaluation.errored
    );
    // Two refusals, then the 3 pages.
    assert_eq!(calls(&s, "DescribeSecurityGroups"), 5);
    assert_eq!(calls(&s, "GetAccountSummary"), 2);
    assert_eq!(
        out.evaluation
            .findings
            .iter()
            .filter(|f| f.rule == "secgroup_suspicious_ingress")
            .count(),
        4
    );
}

#[test]
fn throttling_gives_up_after_the_attempts() {
    let s = aws(|op, _, _| (op == "DescribeSecurityGroups").then(|| (429, "{}".to_string())));
    let out = audit(&opts(&s.url)).unwrap();
    assert_eq!(calls(&s, "DescribeSecurityGroups"), 6);
    let err = &out.evaluation.errored[&(
        "999988887777".to_string(),
        "us-east-1".to_string(),
        "secgroup_suspicious_ingress".to_string(),
    )];
    assert!(
        err.contains("DescribeSecurityGroups") && err.contains("429"),
        "{err}"
    );
}

#[test]
fn access_denied_errors_the_check_and_keeps_its_findings_open() {
    let good = aws(|_, _, _| None);
    let first = audit(&opts(&good.url)).unwrap();
    let now = jiff::Timestamp::now();
    let (s1, e1) = diff(&State::default(), &first.evaluation, now);
    assert_eq!(
        e1.iter()
            .filter(|e| e.rule == "secgroup_suspicious_ingress")
            .count(),
        4
    );
    let denied = aws(|op, _, _| {
        (op == "DescribeSecurityGroups").then(|| (403, "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors></Response>".to_string()))
    });
    let second = audit(&opts(&denied.url)).unwrap();
    let errored: Vec<&String> = second
        .evaluation
        .errored
        .keys()
        .map(|(_, _, r)| r)
        .collect();
    assert!(errored.iter().any(|r| *r == "secgroup_suspicious_ingress"));
    assert!(
        errored
            .iter()
            .all(|r| r.starts_with("ec2_securitygroup") || *r == "secgroup_suspicious_ingress"),
        "{errored:?}"
    );
    let msg = second.evaluation.errored.values().next().unwrap();
    assert!(
        msg.contains("UnauthorizedOperation") && msg.contains("DescribeSecurityGroups"),
        "{msg}"
    );
    // Not resolved: no event, the findings stay open.
    let (s2, e2) = diff(&s1, &second.evaluation, now);
    assert!(e2.is_empty(), "{e2:?}");
    assert_eq!(s2.findings.len(), s1.findings.len());
}

#[test]
fn malformed_and_entity_answers_error_the_check() {
    for bad in [
        "<DescribeInstancesResponse><reservationSet><item>",
        "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><DescribeInstancesResponse>&b;</DescribeInstancesResponse>",
    ] {
        let s = aws(move |op, _, _| (op == "DescribeInstances").then(|| (200, bad.to_string())));
        let out = audit(&opts(&s.url)).unwrap();
        let key = (
            "999988887777".to_string(),
            "us-east-1".to_string(),
            "ec2_instance_imdsv2_enabled".to_string(),
        );
        let err = &out.evaluation.errored[&key];
        assert!(err.contains("malformed answer") && err.contains("DescribeInstances"), "{err}");
        // The other sources are fine.
        assert!(!out.evaluation.errored.keys().any(|(_, _, r)| r == "secgroup_suspicious_ingress"));
    }
}

#[test]
fn oversized_answer_is_refused() {
    let s = aws(|op, _, _| {
        (op == "DescribeInstances").then(|| (200, format!("<R>{}</R>", "x".repeat(5000))))
    });
    let mut o = opts(&s.url);
    o.client.max_body = 4096;
    let out = audit(&o).unwrap();
    let err = out
        .evaluation
        .errored
        .iter()
        .find(|((_, _, r), _)| r == "ec2_instance_imdsv2_enabled")
        .unwrap()
        .1;
    assert!(err.contains("larger than 4096 bytes"), "{err}");
}

#[test]
fn dead_endpoint_is_a_clear_error_within_3_s() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let e = audit(&opts(&url)).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        e.contains(&url) && e.contains("GetCallerIdentity") && e.contains("cannot reach"),
        "{e}"
    );
}

#[test]
fn run_state_and_json_lines() {
    let s = aws(|_, _, _| None);
    let out = audit(&opts(&s.url)).unwrap();
    let (_, events) = diff(&State::default(), &out.evaluation, jiff::Timestamp::now());
    let mut buf = Vec::new();
    palisade_audit::output::json_lines(&events, &mut buf).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), events.len());
    for l in &lines {
        for k in [
            "event",
            "rule",
            "subject",
            "region",
            "severity",
            "fingerprint",
        ] {
            assert!(l.get(k).is_some_and(|v| v.is_string()), "{k} in {l}");
        }
    }
}

#[test]
fn bulk_output_uses_fingerprints_and_retries_item_errors() {
    let s = aws(|_, _, _| None);
    let out = audit(&opts(&s.url)).unwrap();
    let (_, events) = diff(&State::default(), &out.evaluation, jiff::Timestamp::now());
    assert!(events.len() >= 6);
    let victim = events[1].fingerprint.clone();
    let refused = events[2].fingerprint.clone();
    let v2 = victim.clone();
    let r2 = refused.clone();
    let throttled_once = Mutex::new(false);
    // Request 0: the whole batch is too large (413) → halves. Then one item is throttled once
    // (429, retried) and one refused for good (400).
    let es = common::stub(move |req, n| {
        assert!(req.line.starts_with("POST /_bulk "), "{}", req.line);
        assert!(req
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/x-ndjson"));
        if n == 0 {
            return (413, "too large".into());
        }
        let lines: Vec<serde_json::Value> = req
            .body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() % 2, 0);
        let mut items = Vec::new();
        for pair in lines.chunks(2) {
            let id = pair[0]["index"]["_id"].as_str().unwrap().to_string();
            assert_eq!(pair[0]["index"]["_index"], "audit-test");
            assert_eq!(
                pair[1]["fingerprint"].as_str().unwrap(),
                id,
                "document id = fingerprint"
            );
            let mut t = throttled_once.lock().unwrap();
            let status = if id == v2 && !*t {
                *t = true;
                429
            } else if id == r2 {
                400
            } else {
                201
            };
            items.push(serde_json::json!({"index": {"_id": id, "status": status,
                "error": if status >= 400 { serde_json::json!({"type": "mapper_parsing_exception"}) } else { serde_json::Value::Null }}}));
        }
        (
            200,
            serde_json::json!({"errors": true, "items": items}).to_string(),
        )
    });
    let err = palisade_audit::output::elasticsearch_bulk(
        &es.url,
        "audit-test",
        &events,
        5,
        Duration::from_millis(1),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&refused) && err.contains("400"), "{err}");
    assert!(
        err.contains(&format!("{} indexed, 1 refused", events.len() - 1)),
        "{err}"
    );
    let seen = es.seen.lock().unwrap();
    let sent = |id: &str| {
        seen.iter()
            .filter(|r| r.body.contains(&format!("\"_id\":\"{id}\"")))
            .count()
    };
    assert_eq!(sent(&victim), 3, "413'd, throttled, then indexed");
    assert_eq!(
        sent(&refused),
        2,
        "413'd, then refused for good (never retried)"
    );
}

#[test]
fn bucket_of_another_region_is_read_where_it_lives() {
    let s = aws(|op, r, n| {
        match op {
        "ListBuckets" => Some((
            200,
            "<ListAllMyBucketsResult><Buckets><Bucket><Name>far</Name></Bucket></Buckets></ListAllMyBucketsResult>".into(),
        )),
        "GetBucketPolicy" if n == 0 => Some((
            301,
            "<Error><Code>PermanentRedirect</Code><Message>use eu-west-1</Message></Error>".into(),
        )),
        "GetBucketPolicy" => {
            assert!(r.line.starts_with("GET /far?policy "), "{}", r.line);
            Some((
                200,
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:PutObject"}]}"#.into(),
            ))
        }
        "GetBucketLocation" => Some((
            200,
            "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">eu-west-1</LocationConstraint>".into(),
        )),
        _ => None,
    }
    });
    let out = audit(&opts(&s.url)).unwrap();
    assert!(
        out.evaluation.errored.is_empty(),
        "{:?}",
        out.evaluation.errored
    );
    assert!(out
        .evaluation
        .findings
        .iter()
        .any(|f| f.rule == "s3_bucket_policy_public_write_access" && f.subject == "far"));
    // The second GetBucketPolicy was signed for the bucket's region.
    let seen = s.seen.lock().unwrap();
    let policy: Vec<&Seen> = seen
        .iter()
        .filter(|r| operation(r) == "GetBucketPolicy")
        .collect();
    assert_eq!(policy.len(), 2);
    let auth = |r: &Seen| {
        r.headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1
            .clone()
    };
    assert!(auth(policy[0]).contains("/us-east-1/s3/aws4_request"));
    assert!(
        auth(policy[1]).contains("/eu-west-1/s3/aws4_request"),
        "{}",
        auth(policy[1])
    );
}

#[test]
fn elbv2_http_listener_that_only_redirects_to_https_is_fine() {
    let s = aws(|op, r, _| {
        match op {
        "v2:DescribeLoadBalancers" => Some((
            200,
            "<DescribeLoadBalancersResponse><DescribeLoadBalancersResult><LoadBalancers>\
             <member><LoadBalancerArn>arn:redirect</LoadBalancerArn><LoadBalancerName>redirect</LoadBalancerName><Scheme>internet-facing</Scheme><Type>application</Type></member>\
             <member><LoadBalancerArn>arn:plain</LoadBalancerArn><LoadBalancerName>plain</LoadBalancerName><Scheme>internet-facing</Scheme><Type>application</Type></member>\
             </LoadBalancers></DescribeLoadBalancersResult></DescribeLoadBalancersResponse>".into(),
        )),
        "DescribeListeners" => {
            let action = if r.param("LoadBalancerArn").as_deref() == Some("arn:redirect") {
                "<Type>redirect</Type><RedirectConfig><Protocol>HTTPS</Protocol><Port>443</Port></RedirectConfig>"
            } else {
                "<Type>forward</Type>"
            };
            Some((
                200,
                format!(
                    "<DescribeListenersResponse><DescribeListenersResult><Listeners><member>\
                     <Port>80</Port><Protocol>HTTP</Protocol><DefaultActions><member>{action}</member></DefaultActions>\
                     </member></Listeners></DescribeListenersResult></DescribeListenersResponse>"
                ),
            ))
        }
        _ => None,
    }
    });
    let out = audit(&opts(&s.url)).unwrap();
    assert!(
        out.evaluation.errored.is_empty(),
        "{:?}",
        out.evaluation.errored
    );
    let ssl: Vec<&str> = out
        .evaluation
        .findings
        .iter()
        .filter(|f| f.rule == "elbv2_ssl_listeners")
        .map(|f| f.subject.as_str())
        .collect();
    assert_eq!(ssl, ["plain"]);
    assert_eq!(
        calls(&s, "DescribeListeners"),
        2,
        "one call per load balancer"
    );
}
