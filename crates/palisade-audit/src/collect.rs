//! Reading an account's configuration: EC2, ELB (classic and v2), IAM, S3 and CloudTrail.
//! Every source is its own `Result`, so a failed API call errors the checks that need it and
//! nothing else.

use crate::client::Client;
use crate::error::AuditError;
use crate::xml::{self, child, list, text};
use serde::{Deserialize, Serialize};

/// A source's outcome: the data, or the error that makes its checks `errored`.
pub type Sourced<T> = Result<T, String>;

/// One ingress permission of a security group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// `tcp`, `udp`, `icmp`, `-1` (all)… as AWS names it (`6` → `tcp`, etc. normalised).
    pub protocol: String,
    /// First port (`None` for all ports).
    pub from_port: Option<i32>,
    /// Last port.
    pub to_port: Option<i32>,
    /// IPv4 and IPv6 ranges.
    pub ranges: Vec<ipnet::IpNet>,
    /// Source security groups.
    pub groups: Vec<String>,
}

/// A security group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// VPC.
    pub vpc_id: Option<String>,
    /// Ingress permissions.
    pub ingress: Vec<Permission>,
    /// Egress permissions.
    pub egress: Vec<Permission>,
}

/// An instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instance {
    /// `i-…`.
    pub id: String,
    /// AMI.
    pub image_id: String,
    /// State name.
    pub state: String,
    /// Launch time as AWS wrote it.
    pub launch_time: String,
    /// `required` when IMDSv2 is enforced.
    pub http_tokens: Option<String>,
}

/// An AMI.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    /// `ami-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Launch permission for everyone.
    pub public: bool,
    /// Owned by the audited account.
    pub owned: bool,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// A load balancer listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Listener {
    /// `HTTP`, `HTTPS`, `TCP`, `SSL`, `TLS`…
    pub protocol: String,
    /// Port the balancer listens on.
    pub port: i32,
    /// ELBv2: the default action redirects to HTTPS (an HTTP listener that only redirects is
    /// not plain HTTP service).
    #[serde(default)]
    pub redirects_to_https: bool,
}

/// A load balancer (classic or v2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// Name.
    pub name: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    /// `classic`, `application`, `network`, `gateway`.
    pub kind: String,
    /// Listeners.
    pub listeners: Vec<Listener>,
}

/// What one region holds.
#[derive(Debug)]
pub struct RegionInventory {
    /// Region name.
    pub region: String,
    /// Security groups.
    pub security_groups: Sourced<Vec<SecurityGroup>>,
    /// Instances (not terminated).
    pub instances: Sourced<Vec<Instance>>,
    /// AMIs in use or owned.
    pub images: Sourced<Vec<Image>>,
    /// Classic load balancers.
    pub elb: Sourced<Vec<LoadBalancer>>,
    /// ELBv2 load balancers.
    pub elbv2: Sourced<Vec<LoadBalancer>>,
}

/// An IAM user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    /// Name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Attached managed policy names.
    pub policies: Vec<String>,
    /// Console password set.
    pub password_enabled: bool,
    /// MFA device active.
    pub mfa_active: bool,
    /// Active access keys' last rotation (RFC 3339).
    pub active_keys_rotated: Vec<String>,
}

/// An IAM group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Attached managed policy names.
    pub policies: Vec<String>,
}

/// The account-wide IAM picture.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Iam {
    /// Users.
    pub users: Vec<User>,
    /// Groups.
    pub groups: Vec<Group>,
    /// `AccountMFAEnabled` of the summary.
    pub root_mfa: bool,
    /// `AccountAccessKeysPresent` of the summary.
    pub root_keys: bool,
}

/// A trail.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trail {
    /// Name.
    pub name: String,
    /// Multi-region.
    pub multi_region: bool,
    /// Log file validation on.
    pub log_file_validation: bool,
    /// Logging now.
    pub logging: bool,
}

/// A bucket and its policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bucket {
    /// Name.
    pub name: String,
    /// The bucket policy document, when there is one.
    pub policy: Option<serde_json::Value>,
}

/// Everything read from one account.
#[derive(Debug)]
pub struct AccountInventory {
    /// Account id (from `GetCallerIdentity`).
    pub account: String,
    /// Regions.
    pub regions: Vec<RegionInventory>,
    /// IAM (once per account).
    pub iam: Sourced<Iam>,
    /// S3 buckets (once per account).
    pub buckets: Sourced<Vec<Bucket>>,
    /// CloudTrail trails (read in the first region; multi-region trails show everywhere).
    pub trails: Sourced<Vec<Trail>>,
}

fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

impl Client {
    /// A paginated Query call: sends `token_param` from the previous page's `token_elem` until
    /// there is none; `each` reads every page.
    pub fn paginate(
        &self,
        service: &str,
        region: &str,
        action: &str,
        base: &[(String, String)],
        token_param: &str,
        token_elem: &str,
        mut each: impl FnMut(roxmltree::Node<'_, '_>),
    ) -> Result<(), AuditError> {
        let mut token: Option<String> = None;
        for _ in 0..100_000 {
            let mut params = base.to_vec();
            if let Some(t) = &token {
                params.push(p(token_param, t.clone()));
            }
            let text = self.query(service, region, action, &params)?;
            let doc = xml::parse(&text).map_err(|detail| AuditError::Malformed {
                endpoint: self.endpoint(service, region),
                operation: action.into(),
                detail,
            })?;
            each(doc.root_element());
            let next = xml::find(&doc, token_elem)
                .and_then(|n| n.text())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            match next {
                Some(n) if Some(&n) != token.as_ref() => token = Some(n),
                _ => return Ok(()),
            }
        }
        Err(AuditError::Malformed {
            endpoint: self.endpoint(service, region),
            operation: action.into(),
            detail: "more than 100000 pages".into(),
        })
    }

    /// The account id of these credentials.
    pub fn caller_account(&self, region: &str) -> Result<String, AuditError> {
        let text = self.query("sts", region, "GetCallerIdentity", &[])?;
        let doc =
            xml::parse(&text).map_err(|d| self.malformed("sts", region, "GetCallerIdentity", d))?;
        xml::find(&doc, "Account")
            .and_then(|n| n.text())
            .map(|s| s.trim().to_string())
            .ok_or_else(|| self.malformed("sts", region, "GetCallerIdentity", "no Account".into()))
    }

    /// `AssumeRole`: a client acting in the role's account.
    pub fn assume_role(
        &self,
        region: &str,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> Result<Client, AuditError> {
        let mut params = vec![
            p("RoleArn", role_arn),
            p("RoleSessionName", "palisade-audit"),
            p("DurationSeconds", "3600"),
        ];
        if let Some(e) = external_id {
            params.push(p("ExternalId", e));
        }
        let text = self.query("sts", region, "AssumeRole", &params)?;
        let doc = xml::parse(&text).map_err(|d| self.malformed("sts", region, "AssumeRole", d))?;
        let c = xml::find(&doc, "Credentials")
            .ok_or_else(|| self.malformed("sts", region, "AssumeRole", "no Credentials".into()))?;
        let get = |n| text_of(c, n).unwrap_or_default();
        Ok(self.with_credentials(crate::creds::Credentials::new(
            &get("AccessKeyId"),
            &get("SecretAccessKey"),
            Some(&get("SessionToken")),
        )))
    }

    fn malformed(&self, service: &str, region: &str, op: &str, detail: String) -> AuditError {
        AuditError::Malformed {
            endpoint: self.endpoint(service, region),
            operation: op.into(),
            detail,
        }
    }

    /// Security groups of a region.
    pub fn security_groups(&self, region: &str) -> Result<Vec<SecurityGroup>, AuditError> {
        let mut out = Vec::new();
        self.paginate(
            "ec2",
            region,
            "DescribeSecurityGroups",
            &[p("MaxResults", "1000")],
            "NextToken",
            "nextToken",
            |root| {
                for g in list(root, "securityGroupInfo") {
                    out.push(SecurityGroup {
                        id: text_of(g, "groupId").unwrap_or_default(),
                        name: text_of(g, "groupName").unwrap_or_default(),
                        vpc_id: text_of(g, "vpcId"),
                        ingress: list(g, "ipPermissions")
                            .into_iter()
                            .map(permission)
                            .collect(),
                        egress: list(g, "ipPermissionsEgress")
                            .into_iter()
                            .map(permission)
                            .collect(),
                    });
                }
            },
        )?;
        Ok(out)
    }

    /// Instances of a region that are not terminated.
    pub fn instances(&self, region: &str) -> Result<Vec<Instance>, AuditError> {
        let mut out = Vec::new();
        let mut base = vec![
            p("MaxResults", "1000"),
            p("Filter.1.Name", "instance-state-name"),
        ];
        for (i, s) in ["pending", "running", "stopping", "stopped"]
            .iter()
            .enumerate()
        {
            base.push(p(&format!("Filter.1.Value.{}", i + 1), *s));
        }
        self.paginate(
            "ec2",
            region,
            "DescribeInstances",
            &base,
            "NextToken",
            "nextToken",
            |root| {
                for r in list(root, "reservationSet") {
                    for i in list(r, "instancesSet") {
                        out.push(Instance {
                            id: text_of(i, "instanceId").unwrap_or_default(),
                            image_id: text_of(i, "imageId").unwrap_or_default(),
                            state: child(i, "instanceState")
                                .and_then(|s| text_of(s, "name"))
                                .unwrap_or_default(),
                            launch_time: text_of(i, "launchTime").unwrap_or_default(),
                            http_tokens: child(i, "metadataOptions")
                                .and_then(|m| text_of(m, "httpTokens")),
                        });
                    }
                }
            },
        )?;
        Ok(out)
    }

    /// AMIs owned by the account plus those `in_use` (looked up by filter, so a deregistered
    /// AMI is simply absent).
    pub fn images(&self, region: &str, in_use: &[String]) -> Result<Vec<Image>, AuditError> {
        let mut out: Vec<Image> = Vec::new();
        let read = |root: roxmltree::Node<'_, '_>, owned: bool, out: &mut Vec<Image>| {
            for i in list(root, "imagesSet") {
                let id = text_of(i, "imageId").unwrap_or_default();
                if let Some(e) = out.iter_mut().find(|e| e.id == id) {
                    e.owned |= owned;
                    continue;
                }
                out.push(Image {
                    name: text_of(i, "name").unwrap_or_default(),
                    public: text_of(i, "isPublic").as_deref() == Some("true"),
                    owned,
                    tags: xml::tags(i),
                    id,
                });
            }
        };
        self.paginate(
            "ec2",
            region,
            "DescribeImages",
            &[p("Owner.1", "self")],
            "NextToken",
            "nextToken",
            |root| read(root, true, &mut out),
        )?;
        for chunk in in_use.chunks(200) {
            let mut base = vec![p("Filter.1.Name", "image-id")];
            for (i, id) in chunk.iter().enumerate() {
                base.push(p(&format!("Filter.1.Value.{}", i + 1), id.clone()));
            }
            self.paginate(
                "ec2",
                region,
                "DescribeImages",
                &base,
                "NextToken",
                "nextToken",
                |root| read(root, false, &mut out),
            )?;
        }
        Ok(out)
    }

    /// Classic load balancers.
    pub fn classic_elbs(&self, region: &str) -> Result<Vec<LoadBalancer>, AuditError> {
        let mut out = Vec::new();
        self.paginate(
            "elb",
            region,
            "DescribeLoadBalancers",
            &[p("PageSize", "400")],
            "Marker",
            "NextMarker",
            |root| {
                let Some(res) = child(root, "DescribeLoadBalancersResult") else {
                    return;
                };
                for lb in list(res, "LoadBalancerDescriptions") {
                    out.push(LoadBalancer {
                        name: text_of(lb, "LoadBalancerName").unwrap_or_default(),
                        scheme: text_of(lb, "Scheme").unwrap_or_default(),
                        kind: "classic".into(),
                        listeners: list(lb, "ListenerDescriptions")
                            .into_iter()
                            .filter_map(|d| child(d, "Listener"))
                            .map(|l| Listener {
                                protocol: text_of(l, "Protocol").unwrap_or_default().to_uppercase(),
                                port: int(l, "LoadBalancerPort").unwrap_or(0),
                                redirects_to_https: false,
                            })
                            .collect(),
                    });
                }
            },
        )?;
        Ok(out)
    }

    /// ELBv2 load balancers with their listeners.
    pub fn elbv2s(&self, region: &str) -> Result<Vec<LoadBalancer>, AuditError> {
        let mut lbs = Vec::new();
        self.paginate(
            "elbv2",
            region,
            "DescribeLoadBalancers",
            &[p("PageSize", "400")],
            "Marker",
            "NextMarker",
            |root| {
                let Some(res) = child(root, "DescribeLoadBalancersResult") else {
                    return;
                };
                for lb in list(res, "LoadBalancers") {
                    lbs.push((
                        text_of(lb, "LoadBalancerArn").unwrap_or_default(),
                        LoadBalancer {
                            name: text_of(lb, "LoadBalancerName").unwrap_or_default(),
                            scheme: text_of(lb, "Scheme").unwrap_or_default(),
                            kind: text_of(lb, "Type").unwrap_or_else(|| "application".into()),
                            listeners: Vec::new(),
                        },
                    ));
                }
            },
        )?;
        let mut out = Vec::with_capacity(lbs.len());
        for (arn, mut lb) in lbs {
            self.paginate(
                "elbv2",
                region,
                "DescribeListeners",
                &[p("LoadBalancerArn", arn), p("PageSize", "400")],
                "Marker",
                "NextMarker",
                |root| {
                    let Some(res) = child(root, "DescribeListenersResult") else {
                        return;
                    };
                    for l in list(res, "Listeners") {
                        let actions = list(l, "DefaultActions");
                        let redirects_to_https = !actions.is_empty()
                            && actions.iter().all(|a| {
                                text(*a, "Type") == Some("redirect")
                                    && child(*a, "RedirectConfig")
                                        .and_then(|r| text(r, "Protocol"))
                                        .is_some_and(|p| p.eq_ignore_ascii_case("HTTPS"))
                            });
                        lb.listeners.push(Listener {
                            protocol: text_of(l, "Protocol").unwrap_or_default().to_uppercase(),
                            port: int(l, "Port").unwrap_or(0),
                            redirects_to_https,
                        });
                    }
                },
            )?;
            out.push(lb);
        }
        Ok(out)
    }

    /// IAM users and groups (one paginated `GetAccountAuthorizationDetails`), the credential
    /// report (console passwords, MFA, key ages) and the account summary (root MFA and keys).
    pub fn iam(&self) -> Result<Iam, AuditError> {
        let r = "us-east-1";
        let mut iam = Iam::default();
        self.paginate(
            "iam",
            r,
            "GetAccountAuthorizationDetails",
            &[
                p("Filter.member.1", "User"),
                p("Filter.member.2", "Group"),
                p("MaxItems", "1000"),
            ],
            "Marker",
            "Marker",
            |root| {
                let Some(res) = child(root, "GetAccountAuthorizationDetailsResult") else {
                    return;
                };
                for u in list(res, "UserDetailList") {
                    iam.users.push(User {
                        name: text_of(u, "UserName").unwrap_or_default(),
                        groups: list(u, "GroupList")
                            .into_iter()
                            .filter_map(|g| g.text().map(|t| t.trim().to_string()))
                            .collect(),
                        policies: policy_names(u),
                        password_enabled: false,
                        mfa_active: false,
                        active_keys_rotated: Vec::new(),
                    });
                }
                for g in list(res, "GroupDetailList") {
                    iam.groups.push(Group {
                        name: text_of(g, "GroupName").unwrap_or_default(),
                        policies: policy_names(g),
                    });
                }
            },
        )?;
        // The summary.
        let summary = self.query("iam", r, "GetAccountSummary", &[])?;
        let doc =
            xml::parse(&summary).map_err(|d| self.malformed("iam", r, "GetAccountSummary", d))?;
        if let Some(map) = xml::find(&doc, "SummaryMap") {
            for e in xml::children(map, "entry") {
                let v = text(e, "value") == Some("1") || text(e, "value").is_some_and(|v| v != "0");
                match text(e, "key") {
                    Some("AccountMFAEnabled") => iam.root_mfa = v,
                    Some("AccountAccessKeysPresent") => iam.root_keys = v,
                    _ => {}
                }
            }
        }
        // The credential report.
        self.query("iam", r, "GenerateCredentialReport", &[])?;
        let mut report = None;
        for attempt in 0..10 {
            match self.query("iam", r, "GetCredentialReport", &[]) {
                Ok(t) => {
                    report = Some(t);
                    break;
                }
                Err(e) if e.code() == Some("ReportInProgress") && attempt < 9 => {
                    std::thread::sleep(std::time::Duration::from_millis(500))
                }
                Err(e) => return Err(e),
            }
        }
        let text = report.unwrap_or_default();
        let doc =
            xml::parse(&text).map_err(|d| self.malformed("iam", r, "GetCredentialReport", d))?;
        let content = xml::find(&doc, "Content")
            .and_then(|n| n.text())
            .unwrap_or_default();
        let csv = base64_decode(content.trim()).ok_or_else(|| {
            self.malformed(
                "iam",
                r,
                "GetCredentialReport",
                "content is not base64".into(),
            )
        })?;
        apply_credential_report(&mut iam, &String::from_utf8_lossy(&csv));
        Ok(iam)
    }

    /// Buckets and their policies.
    pub fn buckets(&self, region: &str) -> Result<Vec<Bucket>, AuditError> {
        let text = self.rest_get("s3", region, "ListBuckets", "/", &[])?;
        let doc = xml::parse(&text).map_err(|d| self.malformed("s3", region, "ListBuckets", d))?;
        let names: Vec<String> = xml::find(&doc, "Buckets")
            .map(|b| {
                xml::children(b, "Bucket")
                    .filter_map(|n| text_of(n, "Name"))
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            let get_policy = |r: &str| {
                self.rest_get(
                    "s3",
                    r,
                    "GetBucketPolicy",
                    &format!("/{name}"),
                    &[p("policy", "")],
                )
            };
            let mut answer = get_policy(region);
            // A bucket of another region: ask where it lives, then ask there.
            if matches!(
                answer.as_ref().err().and_then(|e| e.code()),
                Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "HTTP301")
            ) {
                let loc = self.rest_get(
                    "s3",
                    "us-east-1",
                    "GetBucketLocation",
                    &format!("/{name}"),
                    &[p("location", "")],
                )?;
                let doc = xml::parse(&loc)
                    .map_err(|d| self.malformed("s3", region, "GetBucketLocation", d))?;
                let home = doc
                    .root_element()
                    .text()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .unwrap_or("us-east-1")
                    .to_string();
                answer = get_policy(&home);
            }
            let policy = match answer {
                Ok(t) => Some(serde_json::from_str(&t).map_err(|e| {
                    self.malformed("s3", region, "GetBucketPolicy", format!("{name}: {e}"))
                })?),
                Err(e) if e.code() == Some("NoSuchBucketPolicy") => None,
                Err(e) => return Err(e),
            };
            out.push(Bucket { name, policy });
        }
        Ok(out)
    }

    /// CloudTrail trails with their logging status.
    pub fn trails(&self, region: &str) -> Result<Vec<Trail>, AuditError> {
        const PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101";
        let v = self.json(
            "cloudtrail",
            region,
            PREFIX,
            "DescribeTrails",
            &serde_json::json!({"includeShadowTrails": true}),
        )?;
        let mut out = Vec::new();
        for t in v
            .get("trailList")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            let name = t
                .get("TrailARN")
                .or_else(|| t.get("Name"))
                .and_then(|n| n.as_str())
                .unwrap_or_default();
            let status = self.json(
                "cloudtrail",
                region,
                PREFIX,
                "GetTrailStatus",
                &serde_json::json!({ "Name": name }),
            )?;
            let b = |v: &serde_json::Value, k: &str| {
                v.get(k).and_then(|x| x.as_bool()).unwrap_or(false)
            };
            out.push(Trail {
                name: t
                    .get("Name")
                    .and_then(|n| n.as_str())
                    .unwrap_or(name)
                    .to_string(),
                multi_region: b(t, "IsMultiRegionTrail"),
                log_file_validation: b(t, "LogFileValidationEnabled"),
                logging: b(&status, "IsLogging"),
            });
        }
        Ok(out)
    }

    /// Reads a region.
    pub fn region_inventory(&self, region: &str) -> RegionInventory {
        let instances = self.instances(region);
        let in_use: Vec<String> = match &instances {
            Ok(is) => {
                let mut v: Vec<String> = is.iter().map(|i| i.image_id.clone()).collect();
                v.sort();
                v.dedup();
                v
            }
            Err(_) => Vec::new(),
        };
        let images = match &instances {
            Ok(_) => err_str(self.images(region, &in_use)),
            Err(err) => Err(format!("needs the instances: {err}")),
        };
        RegionInventory {
            region: region.to_string(),
            security_groups: err_str(self.security_groups(region)),
            instances: err_str(instances),
            images,
            elb: err_str(self.classic_elbs(region)),
            elbv2: err_str(self.elbv2s(region)),
        }
    }
}

fn err_str<T>(r: Result<T, AuditError>) -> Sourced<T> {
    r.map_err(|e| e.to_string())
}

fn text_of(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    text(n, name).map(str::to_string)
}

fn int(n: roxmltree::Node<'_, '_>, name: &str) -> Option<i32> {
    text(n, name).and_then(|t| t.parse().ok())
}

fn policy_names(n: roxmltree::Node<'_, '_>) -> Vec<String> {
    list(n, "AttachedManagedPolicies")
        .into_iter()
        .filter_map(|m| text_of(m, "PolicyName"))
        .collect()
}

fn permission(n: roxmltree::Node<'_, '_>) -> Permission {
    let protocol = match text(n, "ipProtocol").unwrap_or("-1") {
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        "58" => "icmpv6",
        p => p,
    }
    .to_string();
    let mut ranges = Vec::new();
    for r in list(n, "ipRanges") {
        if let Some(c) = text(r, "cidrIp").and_then(|c| c.parse().ok()) {
            ranges.push(c);
        }
    }
    for r in list(n, "ipv6Ranges") {
        if let Some(c) = text(r, "cidrIpv6").and_then(|c| c.parse().ok()) {
            ranges.push(c);
        }
    }
    let all = protocol == "-1";
    Permission {
        from_port: if all { None } else { int(n, "fromPort") },
        to_port: if all { None } else { int(n, "toPort") },
        protocol,
        ranges,
        groups: list(n, "groups")
            .into_iter()
            .filter_map(|g| text_of(g, "groupId"))
            .collect(),
    }
}

fn apply_credential_report(iam: &mut Iam, csv: &str) {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else { return };
    let cols: Vec<&str> = header.split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(user), Some(pw), Some(mfa)) =
        (idx("user"), idx("password_enabled"), idx("mfa_active"))
    else {
        return;
    };
    let keys = [
        (idx("access_key_1_active"), idx("access_key_1_last_rotated")),
        (idx("access_key_2_active"), idx("access_key_2_last_rotated")),
    ];
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or_default();
        let Some(u) = iam.users.iter_mut().find(|u| u.name == get(user)) else {
            continue;
        };
        u.password_enabled = get(pw) == "true";
        u.mfa_active = get(mfa) == "true";
        for (a, r) in keys {
            if let (Some(a), Some(r)) = (a, r) {
                if get(a) == "true" {
                    u.active_keys_rotated.push(get(r).to_string());
                }
            }
        }
    }
}

/// Standard base64 (the credential report's encoding); `None` on bad input.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn permission_shapes() {
        let d = xml::parse("<item><ipProtocol>6</ipProtocol><fromPort>22</fromPort><toPort>22</toPort><ipRanges><item><cidrIp>10.0.0.0/8</cidrIp></item></ipRanges><ipv6Ranges><item><cidrIpv6>::/0</cidrIpv6></item></ipv6Ranges><groups/></item>").unwrap();
        let p = permission(d.root_element());
        assert_eq!(p.protocol, "tcp");
        assert_eq!((p.from_port, p.to_port), (Some(22), Some(22)));
        assert_eq!(p.ranges.len(), 2);
    }
}
