//! One audit run: credentials → accounts (the caller's, or each `AssumeRole` target) → regions
//! read concurrently with a bound, account-wide services once → rules.

use crate::client::{Client, ClientOptions};
use crate::collect::{AccountInventory, RegionInventory};
use crate::config::AuditConfig;
use crate::creds::Credentials;
use crate::error::AuditError;
use crate::rules::{self, Evaluation};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// What a run needs besides `[audit]`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Regions (non-empty).
    pub regions: Vec<String>,
    /// Credentials profile (`--profile`).
    pub profile: Option<String>,
    /// Client settings (endpoint, timeouts, retries).
    pub client: ClientOptions,
    /// "Now" for key ages.
    pub now: jiff::Timestamp,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// Findings and errored checks.
    pub evaluation: Evaluation,
    /// Accounts read.
    pub accounts: Vec<String>,
    /// API calls by `region/Operation`.
    pub calls: BTreeMap<String, u64>,
    /// Errors that stopped a whole account (AssumeRole failed…).
    pub account_errors: Vec<String>,
}

/// Runs the audit. Fails only when no account could be read at all.
pub fn run(cfg: &AuditConfig, opts: &RunOptions) -> Result<RunOutcome, AuditError> {
    if opts.regions.is_empty() {
        return Err(AuditError::Config(
            "no region: give --region or [audit] regions".into(),
        ));
    }
    let creds = Credentials::resolve(opts.profile.as_deref())?;
    let base = Client::new(creds, opts.client.clone());
    let home = opts.regions[0].as_str();
    let mut targets: Vec<(String, Client)> = Vec::new();
    let mut out = RunOutcome::default();
    if cfg.accounts.is_empty() {
        let account = base.caller_account(home)?;
        targets.push((account, base.clone()));
    } else {
        let mut first_err = None;
        for a in &cfg.accounts {
            let label = a.name.clone().unwrap_or_else(|| a.role_arn.clone());
            let assumed = base
                .assume_role(home, &a.role_arn, a.external_id.as_deref())
                .and_then(|c| {
                    let id = account_of_arn(&a.role_arn)
                        .map(Ok)
                        .unwrap_or_else(|| c.caller_account(home))?;
                    Ok((id, c))
                });
            match assumed {
                Ok(t) => targets.push(t),
                Err(e) => {
                    tracing::warn!(account = %label, error = %e, "account skipped");
                    out.account_errors.push(format!("{label}: {e}"));
                    first_err.get_or_insert(e);
                }
            }
        }
        if targets.is_empty() {
            return Err(first_err.expect("accounts is non-empty"));
        }
    }
    for (account, client) in &targets {
        let inv = read_account(account, client, &opts.regions, cfg.max_concurrency);
        rules::evaluate(&inv, cfg, opts.now, &mut out.evaluation);
        out.accounts.push(account.clone());
    }
    out.calls = base.calls().lock().expect("call counter").clone();
    Ok(out)
}

/// `arn:aws:iam::123456789012:role/x` → `123456789012`.
fn account_of_arn(arn: &str) -> Option<String> {
    let id = arn.split(':').nth(4)?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

enum Job {
    Region(String),
    Account,
}

enum Done {
    Region(RegionInventory),
    Account(Box<AccountWide>),
}

type AccountWide = (
    crate::collect::Sourced<crate::collect::Iam>,
    crate::collect::Sourced<Vec<crate::collect::Bucket>>,
    crate::collect::Sourced<Vec<crate::collect::Trail>>,
);

/// Reads one account: regions through a pool of at most `bound` threads, plus one job for the
/// account-wide services.
pub fn read_account(
    account: &str,
    client: &Client,
    regions: &[String],
    bound: usize,
) -> AccountInventory {
    let home = regions[0].clone();
    let mut jobs: VecDeque<Job> = regions.iter().cloned().map(Job::Region).collect();
    jobs.push_front(Job::Account);
    let n = bound.clamp(1, 64).min(jobs.len());
    let jobs = Mutex::new(jobs);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let job = jobs.lock().expect("jobs").pop_front();
                let result = match job {
                    None => break,
                    Some(Job::Region(r)) => Done::Region(client.region_inventory(&r)),
                    Some(Job::Account) => Done::Account(Box::new((
                        client.iam().map_err(|e| e.to_string()),
                        client.buckets(&home).map_err(|e| e.to_string()),
                        client.trails(&home).map_err(|e| e.to_string()),
                    ))),
                };
                done.lock().expect("done").push(result);
            });
        }
    });
    let mut inv = AccountInventory {
        account: account.to_string(),
        regions: Vec::new(),
        iam: Err("not read".into()),
        buckets: Err("not read".into()),
        trails: Err("not read".into()),
    };
    for d in done.into_inner().expect("done") {
        match d {
            Done::Region(r) => inv.regions.push(r),
            Done::Account(a) => {
                let (iam, buckets, trails) = *a;
                inv.iam = iam;
                inv.buckets = buckets;
                inv.trails = trails;
            }
        }
    }
    inv.regions.sort_by(|a, b| a.region.cmp(&b.region));
    inv
}

#[cfg(test)]
mod tests {
    #[test]
    fn arn_account() {
        assert_eq!(
            super::account_of_arn("arn:aws:iam::123456789012:role/audit").as_deref(),
            Some("123456789012")
        );
        assert_eq!(super::account_of_arn("arn:aws:iam::x:role/audit"), None);
    }
}
