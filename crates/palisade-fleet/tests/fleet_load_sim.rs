//! The short CI version of bench/fleet's load generator: 50 simulated agents (the generator's
//! own agent code, `examples/fleet_load/sim.rs`) against the real fleet server on a SQLite
//! store, over loopback TLS WebSockets. Asserts behaviour only, never timings:
//! * every event arrives exactly once, also when every connection is cut in the middle of the
//!   stream and the agents resend from the server's mark;
//! * a ban one agent takes locally reaches every other agent (share_bans).

#[path = "../examples/fleet_load/sim.rs"]
mod sim;

use ipnet::IpNet;
use palisade_fleet::server::{self, ServerOptions};
use palisade_proto::fleet::BanAction;
use sim::{Agent, AgentStats, Cmd, Identity, Produce, Receipt, Target};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const AGENTS: usize = 50;
const EVENTS: u64 = 2_500; // per agent: 3 batches of 1,000 (the last one partial)

struct Running {
    stats: Vec<Arc<AgentStats>>,
    cmds: Vec<mpsc::UnboundedSender<Cmd>>,
    receipts: mpsc::UnboundedReceiver<Receipt>,
    tasks: tokio::task::JoinSet<()>,
}

fn start(target: &Target, ids: &[Identity]) -> Running {
    let (rtx, rrx) = mpsc::unbounded_channel();
    let mut r = Running {
        stats: Vec::new(),
        cmds: Vec::new(),
        receipts: rrx,
        tasks: tokio::task::JoinSet::new(),
    };
    for (i, id) in ids.iter().enumerate() {
        let st = Arc::new(AgentStats::default());
        let (ctx, crx) = mpsc::unbounded_channel();
        // Same seed on every start: an agent keeps its epoch (its store) across restarts.
        let a = Agent::new(
            i,
            id.clone(),
            target.clone(),
            Produce::Backlog { total: EVENTS },
            st.clone(),
            rtx.clone(),
            crx,
            7,
        );
        r.stats.push(st);
        r.cmds.push(ctx);
        r.tasks.spawn(a.run());
    }
    r
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    // A bound, not a timing assertion: generous for a loaded CI machine.
    for _ in 0..6000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not reached within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_simulated_agents_ship_exactly_once_and_all_get_a_shared_ban() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("server.db").display());
    let srv = server::spawn(
        ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: dir.path().to_path_buf(),
            store_url: url.clone(),
            share_bans: true,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let mut store = palisade_store::fleet::open(&url).unwrap();
    let token =
        palisade_fleet::admin::token_add(store.as_mut(), dir.path(), AGENTS as u32, None).unwrap();
    let (secret, fp) = sim::parse_token(&token).unwrap();
    assert_eq!(fp, srv.fingerprint());
    let target = Target::new(&format!("wss://{}", srv.local_addr()), &fp).unwrap();

    let mut ids = Vec::new();
    for i in 0..AGENTS {
        ids.push(
            sim::enroll(&target, &secret, &format!("sim-{i:02}"))
                .await
                .unwrap(),
        );
    }
    // The token had AGENTS uses: one more enrollment is refused.
    assert!(sim::enroll(&target, &secret, "sim-extra").await.is_err());

    // Phase 1: stream, then cut every connection abruptly once some batches are acked (the
    // unacknowledged ones are in flight and will be sent again).
    let mut run = start(&target, &ids);
    let total = EVENTS * AGENTS as u64;
    wait_for("a third of the events acked", || {
        run.stats
            .iter()
            .map(|s| s.acked.load(Ordering::SeqCst))
            .sum::<u64>()
            >= total / 3
    })
    .await;
    run.tasks.abort_all();
    while run.tasks.join_next().await.is_some() {}
    let acked_at_cut: u64 = run
        .stats
        .iter()
        .map(|s| s.acked.load(Ordering::SeqCst))
        .sum();
    assert!(acked_at_cut < total, "cut came too late to test anything");

    // Phase 2: the same agents (same identities and epochs) come back and finish.
    let mut run = start(&target, &ids);
    wait_for("every event acked", || {
        run.stats
            .iter()
            .all(|s| s.acked.load(Ordering::SeqCst) == EVENTS)
    })
    .await;
    let counts: HashMap<String, u64> = palisade_fleet::admin::agents(store.as_mut())
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.events))
        .collect();
    for id in &ids {
        assert_eq!(
            counts.get(&id.name).copied(),
            Some(EVENTS),
            "{}: events stored exactly once",
            id.name
        );
    }

    // A local ban on agent 0 reaches the 49 others.
    wait_for("all connected", || {
        run.stats.iter().all(|s| s.connected.load(Ordering::SeqCst))
    })
    .await;
    while run.receipts.try_recv().is_ok() {}
    let ban: IpNet = "198.18.7.9/32".parse().unwrap();
    run.cmds[0].send(Cmd::LocalBan(ban)).unwrap();
    let mut got = [false; AGENTS];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while got.iter().skip(1).any(|g| !g) {
        let r = tokio::time::timeout_at(deadline, run.receipts.recv())
            .await
            .expect("every agent receives the shared ban within the bound")
            .expect("agents alive");
        if r.target == ban && r.action == BanAction::Ban {
            got[r.agent] = true;
        }
    }
    for c in &run.cmds {
        let _ = c.send(Cmd::Stop);
    }
    while run.tasks.join_next().await.is_some() {}
    srv.shutdown();
}
