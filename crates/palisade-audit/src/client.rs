//! A small signed AWS client over `ureq` (blocking): the Query protocol (form POST, XML
//! answer), JSON 1.1 (CloudTrail) and plain REST GETs (S3). Retries throttling with exponential
//! backoff and full jitter; bounds every answer; counts API calls per region and operation.

use crate::creds::Credentials;
use crate::error::AuditError;
use crate::sigv4;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// One endpoint for every service (tests: the moto server), instead of AWS's.
    pub endpoint: Option<String>,
    /// Connect timeout (a dead endpoint is reported within it).
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Largest answer read, in bytes.
    pub max_body: u64,
    /// Attempts on throttling (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubles each attempt, full jitter.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            endpoint: None,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(60),
            max_body: 64 << 20,
            attempts: 6,
            backoff: Duration::from_millis(200),
        }
    }
}

/// API calls made, by `region/Operation`.
pub type CallCounts = Arc<Mutex<BTreeMap<String, u64>>>;

/// A signed client for one set of credentials.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    opts: ClientOptions,
    creds: Credentials,
    calls: CallCounts,
}

/// Query-protocol API versions.
fn version(service: &str) -> &'static str {
    match service {
        "ec2" => "2016-11-15",
        "elb" => "2012-06-01",
        "elbv2" => "2015-12-01",
        "iam" => "2010-05-08",
        "sts" => "2011-06-15",
        _ => "",
    }
}

/// The signing name of a service.
fn signing_name(service: &str) -> &str {
    match service {
        "elb" | "elbv2" => "elasticloadbalancing",
        s => s,
    }
}

fn is_throttle(status: u16, code: &str) -> bool {
    matches!(status, 429 | 503)
        || matches!(
            code,
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "SlowDown"
                | "RequestThrottled"
        )
}

struct Req<'a> {
    service: &'a str,
    region: &'a str,
    operation: &'a str,
    method: &'a str,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Client {
    /// A client; nothing is sent yet.
    pub fn new(creds: Credentials, opts: ClientOptions) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(opts.connect_timeout)
            .timeout(opts.timeout)
            .build();
        Client {
            agent,
            opts,
            creds,
            calls: Arc::default(),
        }
    }

    /// The same transport and counters with other credentials (after `AssumeRole`).
    pub fn with_credentials(&self, creds: Credentials) -> Self {
        Client {
            creds,
            ..self.clone()
        }
    }

    /// Calls made so far (shared by every clone).
    pub fn calls(&self) -> CallCounts {
        self.calls.clone()
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Base URL for a service in a region.
    pub fn endpoint(&self, service: &str, region: &str) -> String {
        if let Some(e) = &self.opts.endpoint {
            return e.trim_end_matches('/').to_string();
        }
        match service {
            "iam" => "https://iam.amazonaws.com".into(),
            "elb" | "elbv2" => format!("https://elasticloadbalancing.{region}.amazonaws.com"),
            s => format!("https://{s}.{region}.amazonaws.com"),
        }
    }

    /// One Query-protocol call (`Action`, `Version` added); returns the XML text.
    pub fn query(
        &self,
        service: &str,
        region: &str,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, AuditError> {
        let mut form = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), version(service).to_string()),
        ];
        form.extend(params.iter().cloned());
        let body = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    sigv4::uri_encode(k, false),
                    sigv4::uri_encode(v, false)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        self.send(Req {
            service,
            region: if service == "iam" {
                "us-east-1"
            } else {
                region
            },
            operation: action,
            method: "POST",
            path: "/".into(),
            query: vec![],
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body: body.into_bytes(),
        })
    }

    /// One JSON 1.1 call (`X-Amz-Target: {prefix}.{operation}`).
    pub fn json(
        &self,
        service: &str,
        region: &str,
        target_prefix: &str,
        operation: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, AuditError> {
        let text = self.send(Req {
            service,
            region,
            operation,
            method: "POST",
            path: "/".into(),
            query: vec![],
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                (
                    "x-amz-target".into(),
                    format!("{target_prefix}.{operation}"),
                ),
            ],
            body: body.to_string().into_bytes(),
        })?;
        serde_json::from_str(&text).map_err(|e| AuditError::Malformed {
            endpoint: self.endpoint(service, region),
            operation: operation.into(),
            detail: e.to_string(),
        })
    }

    /// A REST GET (S3); path-style addressing.
    pub fn rest_get(
        &self,
        service: &str,
        region: &str,
        operation: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Result<String, AuditError> {
        self.send(Req {
            service,
            region,
            operation,
            method: "GET",
            path: path.into(),
            query: query.to_vec(),
            headers: vec![("x-amz-content-sha256".into(), sigv4::sha256_hex(b""))],
            body: vec![],
        })
    }

    fn send(&self, r: Req<'_>) -> Result<String, AuditError> {
        let endpoint = self.endpoint(r.service, r.region);
        let mut attempt = 0;
        loop {
            attempt += 1;
            *self
                .calls
                .lock()
                .expect("call counter")
                .entry(format!("{}/{}/{}", r.region, r.service, r.operation))
                .or_default() += 1;
            match self.send_once(&r, &endpoint) {
                Err(AuditError::Api { status, code, .. })
                    if is_throttle(status, &code) && attempt < self.opts.attempts =>
                {
                    let cap = self.opts.backoff.as_millis() as u64 * (1u64 << attempt.min(10));
                    let wait = fastrand::u64(0..=cap.max(1));
                    tracing::debug!(operation = r.operation, code, wait, "throttled; retrying");
                    std::thread::sleep(Duration::from_millis(wait));
                }
                other => return other,
            }
        }
    }

    fn send_once(&self, r: &Req<'_>, endpoint: &str) -> Result<String, AuditError> {
        let err_transport = |detail: String| AuditError::Transport {
            endpoint: endpoint.to_string(),
            operation: r.operation.to_string(),
            detail,
        };
        let host = endpoint
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(endpoint)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let amz_date = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let mut headers = r.headers.clone();
        headers.push(("host".into(), host));
        headers.push(("x-amz-date".into(), amz_date.clone()));
        if let Some(t) = &self.creds.session_token {
            headers.push(("x-amz-security-token".into(), t.expose().to_string()));
        }
        let auth = sigv4::authorization(
            &sigv4::Request {
                method: r.method,
                path: &r.path,
                query: &r.query,
                headers: &headers,
                payload: &r.body,
            },
            &self.creds.access_key_id,
            self.creds.secret_access_key.expose(),
            r.region,
            signing_name(r.service),
            &amz_date,
        );
        let mut url = format!("{endpoint}{}", sigv4::uri_encode(&r.path, true));
        if !r.query.is_empty() {
            url.push('?');
            url.push_str(
                &r.query
                    .iter()
                    .map(|(k, v)| {
                        if v.is_empty() {
                            sigv4::uri_encode(k, false)
                        } else {
                            format!(
                                "{}={}",
                                sigv4::uri_encode(k, false),
                                sigv4::uri_encode(v, false)
                            )
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        }
        let mut req = self.agent.request(r.method, &url);
        for (k, v) in &headers {
            if k != "host" {
                req = req.set(k, v);
            }
        }
        req = req.set("authorization", &auth);
        let result = if r.body.is_empty() && r.method == "GET" {
            req.call()
        } else {
            req.send_bytes(&r.body)
        };
        let (status, resp) = match result {
            Ok(resp) => (resp.status(), resp),
            Err(ureq::Error::Status(code, resp)) => (code, resp),
            Err(ureq::Error::Transport(t)) => return Err(err_transport(t.to_string())),
        };
        let mut body = String::new();
        let limit = self.opts.max_body;
        let read = resp.into_reader().take(limit + 1).read_to_string(&mut body);
        if let Err(e) = read {
            return Err(AuditError::Malformed {
                endpoint: endpoint.into(),
                operation: r.operation.into(),
                detail: format!("reading the answer: {e}"),
            });
        }
        if body.len() as u64 > limit {
            return Err(AuditError::Malformed {
                endpoint: endpoint.into(),
                operation: r.operation.into(),
                detail: format!("answer larger than {limit} bytes"),
            });
        }
        if status >= 300 {
            let (code, message) = error_code(&body)
                .unwrap_or_else(|| (format!("HTTP{status}"), truncate(&body, 200)));
            return Err(AuditError::Api {
                endpoint: endpoint.into(),
                operation: r.operation.into(),
                status,
                code,
                message,
            });
        }
        Ok(body)
    }
}

fn truncate(s: &str, n: usize) -> String {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim().to_string()
}

/// The first `Error/Code` anywhere in an XML error answer, or `__type` of a JSON one.
pub fn error_code(body: &str) -> Option<(String, String)> {
    if body.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let t = v.get("__type")?.as_str()?;
        let code = t.rsplit('#').next().unwrap_or(t).to_string();
        let msg = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        return Some((code, truncate(msg, 300)));
    }
    let doc = crate::xml::parse(body).ok()?;
    let err = doc
        .descendants()
        .find(|n| n.has_tag_name("Error") && crate::xml::text(*n, "Code").is_some())?;
    Some((
        crate::xml::text(err, "Code")?.to_string(),
        truncate(crate::xml::text(err, "Message").unwrap_or_default(), 300),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_of_each_shape() {
        let ec2 = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>no</Message></Error></Errors></Response>";
        assert_eq!(error_code(ec2).unwrap().0, "UnauthorizedOperation");
        let iam = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>m</Message></Error></ErrorResponse>"#;
        assert_eq!(
            error_code(iam).unwrap(),
            ("AccessDenied".into(), "m".into())
        );
        let s3 = "<Error><Code>NoSuchBucketPolicy</Code></Error>";
        assert_eq!(error_code(s3).unwrap().0, "NoSuchBucketPolicy");
        let j = r#"{"__type":"com.amazon#AccessDeniedException","message":"x"}"#;
        assert_eq!(error_code(j).unwrap().0, "AccessDeniedException");
        assert!(error_code("garbage").is_none());
    }
}
