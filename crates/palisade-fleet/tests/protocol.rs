//! The wire protocol against a real server (in-process, real TLS over loopback): an agent
//! speaking the previous protocol version (1) is served in version 1 (its events stored and
//! acknowledged); version-2-only messages from it are refused; an unknown version is refused;
//! a batch of another epoch is refused.

use futures_util::{SinkExt, StreamExt};
use palisade_fleet::server::{spawn, ServerOptions};
use tokio_tungstenite::tungstenite::Message;

async fn next_text(ws: &mut palisade_fleet::agent::ClientWs) -> Option<String> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

#[test]
fn previous_protocol_version_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("s.db").display());
    let server = spawn(
        ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: dir.path().join("state"),
            store_url: url.clone(),
            share_bans: true,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let addr = format!("wss://127.0.0.1:{}", server.local_addr().port());
    let mut store = palisade_store::fleet::open(&url).unwrap();
    let token =
        palisade_fleet::admin::token_add(store.as_mut(), &dir.path().join("state"), 1, None)
            .unwrap();
    let adir = dir.path().join("agent");
    let id = palisade_fleet::agent::join(&addr, &token, "old1", &adir, false).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let auth = [("authorization", format!("Agent {}.{}", id.agent_id, id.key))];
        let mut ws = palisade_fleet::agent::connect(&addr, &id.fingerprint, &auth)
            .await
            .unwrap();
        // A version-1 hello: no epoch, cursor or clock fields.
        ws.send(Message::text(
            r#"{"v":1,"msg":{"type":"hello","protocol_version":1,"agent":"old1","software_version":"0.0.9"}}"#,
        ))
        .await
        .unwrap();
        let w = next_text(&mut ws).await.unwrap();
        assert!(w.starts_with(r#"{"v":1,"msg":{"type":"welcome","protocol_version":1"#), "{w}");
        // A snapshot of the (empty) ban set follows for a new agent.
        let s = next_text(&mut ws).await.unwrap();
        assert!(s.contains(r#""type":"snapshot""#), "{s}");
        ws.send(Message::text(
            r#"{"v":1,"msg":{"type":"events","epoch":0,"first_seq":1,"last_seq":2,"events":[{"seq":1,"jail":"sshd","time_us":1,"ip":"192.0.2.1","filter":"sshd","rule":"r","failure":true},{"seq":2,"jail":"sshd","time_us":2,"ip":"192.0.2.2","filter":"sshd","rule":"r","failure":true}]}}"#,
        ))
        .await
        .unwrap();
        let mut ack = None;
        while let Some(t) = next_text(&mut ws).await {
            if t.contains(r#""type":"ack""#) {
                ack = Some(t);
                break;
            }
        }
        let ack = ack.expect("an ack");
        assert!(ack.starts_with(r#"{"v":1,"#) && ack.contains(r#""seq":2"#), "{ack}");
        // `checksum` does not exist in version 1: the connection is closed.
        ws.send(Message::text(
            r#"{"v":1,"msg":{"type":"checksum","cursor":0,"count":0,"sum":"x"}}"#,
        ))
        .await
        .unwrap();
        let mut closed = false;
        for _ in 0..10 {
            match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(closed, "a v1 checksum was accepted");

        // An unknown version is refused.
        let mut ws = palisade_fleet::agent::connect(&addr, &id.fingerprint, &auth)
            .await
            .unwrap();
        ws.send(Message::text(
            r#"{"v":9,"msg":{"type":"hello","protocol_version":9,"agent":"old1","software_version":"9"}}"#,
        ))
        .await
        .unwrap();
        match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                assert!(f.reason.contains("version 9"), "{f:?}")
            }
            other => panic!("expected a close, got {other:?}"),
        }
    });
    assert_eq!(store.host_event_count("old1").unwrap(), 2);
    server.shutdown();
}
