//! The audit tables on both backends: a run is recorded atomically (run row, events, open
//! findings), reopening keeps everything, a quiet run writes one run row and no event, and a
//! database with a newer audit schema is refused. PostgreSQL runs under
//! scripts/with-postgres.sh (`PALISADE_TEST_PG_URL`); without it the test is skipped unless
//! `PALISADE_REQUIRE_PG=1`.

use palisade_store::audit::{self, AuditEvent, AuditFinding, AuditRun};

fn finding(key: &str, fp: &str) -> AuditFinding {
    AuditFinding {
        key: key.into(),
        account: "1".into(),
        region: "r".into(),
        rule: "ec2_ami_public".into(),
        subject: key.into(),
        severity: "critical".into(),
        fingerprint: fp.into(),
        first_seen: "2026-01-01T00:00:00Z".into(),
        last_seen: "2026-01-01T00:00:00Z".into(),
        body: format!("{{\"k\":\"{key}\"}}"),
    }
}

fn event(kind: &str, key: &str) -> AuditEvent {
    AuditEvent {
        run_id: 0,
        time: "2026-01-01T00:00:00Z".into(),
        kind: kind.into(),
        key: key.into(),
        rule: "ec2_ami_public".into(),
        subject: key.into(),
        severity: "critical".into(),
        fingerprint: "f".into(),
        body: "{}".into(),
    }
}

fn story(url: &str, bump: impl Fn()) {
    let mut s = audit::open(url).unwrap();
    assert!(s.open_findings().unwrap().is_empty());
    let run = AuditRun {
        started: "2026-01-01T00:00:00Z".into(),
        finished: "2026-01-01T00:00:01Z".into(),
        accounts: "1".into(),
        new: 2,
        errors: "[]".into(),
        ..Default::default()
    };
    let id1 = s
        .record_run(
            &run,
            &[event("new", "a"), event("new", "b")],
            &[finding("a", "1"), finding("b", "1")],
        )
        .unwrap();
    drop(s);
    // Reopen: the same.
    let mut s = audit::open(url).unwrap();
    assert_eq!(
        s.open_findings().unwrap(),
        vec![finding("a", "1"), finding("b", "1")]
    );
    // Quiet run: one run row, no event.
    let id2 = s
        .record_run(
            &AuditRun {
                new: 0,
                ..run.clone()
            },
            &[],
            &[finding("a", "1"), finding("b", "1")],
        )
        .unwrap();
    assert!(id2 > id1);
    // b resolved, a changed.
    s.record_run(
        &run,
        &[event("changed", "a"), event("resolved", "b")],
        &[finding("a", "2")],
    )
    .unwrap();
    assert_eq!(s.open_findings().unwrap(), vec![finding("a", "2")]);
    let runs = s.runs(10).unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1].id, id2);
    let all = s.events(None, 100).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().filter(|e| e.run_id == id2).count(), 0);
    let hist: Vec<String> = s
        .events(Some("a"), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(hist, ["changed", "new"]);
    drop(s);
    // A newer audit schema is refused.
    bump();
    let e = audit::open(url).err().expect("refused").to_string();
    assert!(e.contains("newer"), "{e}");
}

#[test]
fn audit_tables_sqlite() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("p.db");
    let url = format!("sqlite:{}", path.display());
    // The main store and the audit tables share the file.
    drop(palisade_store::open(&url).unwrap());
    story(&url, || {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("INSERT INTO audit_schema_version VALUES (999, 'x')", [])
            .unwrap();
    });
    drop(palisade_store::open(&url).expect("the main store still opens"));
}

#[cfg(feature = "postgres")]
#[test]
fn audit_tables_postgres() {
    let admin = match std::env::var("PALISADE_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var("PALISADE_REQUIRE_PG").as_deref() == Ok("1") {
                panic!("PALISADE_REQUIRE_PG=1 but PALISADE_TEST_PG_URL is not set");
            }
            eprintln!("SKIP PostgreSQL audit tables: PALISADE_TEST_PG_URL is not set");
            return;
        }
    };
    let name = format!("palisade_audit_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = match admin.find("://") {
        Some(i) => {
            let rest = &admin[i + 3..];
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let q = rest[end..]
                .find('?')
                .map(|q| &rest[end + q..])
                .unwrap_or("");
            format!("{}{}/{name}{q}", &admin[..i + 3], &rest[..end])
        }
        None => format!("{admin} dbname={name}"),
    };
    let u2 = url.clone();
    story(&url, move || {
        postgres::Client::connect(&u2, postgres::NoTls)
            .unwrap()
            .batch_execute("INSERT INTO audit_schema_version VALUES (999, 'x')")
            .unwrap();
    });
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
