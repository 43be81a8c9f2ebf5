//! Native clients on a fleet of two real `quibble` nodes (one PostgreSQL, one Redis), over
//! both transports in one room: PostgreSQL is stopped for a while in the middle of the
//! traffic. Sends meanwhile end their stream with a retryable error; the clients rejoin and
//! resend by themselves (same client ids), and once PostgreSQL is back every send is
//! acknowledged, and every member, on either node, holds every acknowledged message exactly
//! once, in seq order, and nothing else.

mod recording;

use std::time::Duration;

use quibble_client::protocol::ErrorCode;
use quibble_client::{Api, TransportChoice};
use quibble_test_support::TestServer;
use quibble_test_support::postgres::Postgres;
use quibble_test_support::redis::Redis;
use recording::{Member, acknowledged, assert_exactly_acknowledged, wait_until};
use tokio::time::sleep;

const PASSWORD: &str = "correct horse battery";
/// Each member sends this many messages, one every `EVERY`.
const EACH: usize = 60;
const EVERY: Duration = Duration::from_millis(50);
/// PostgreSQL is stopped after this many rounds, and started again this many rounds later.
const STOP_AT: usize = 15;
const DOWN_ROUNDS: usize = 30;
/// How long everything may take to settle once it is back.
const SETTLE: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_traffic_loses_and_duplicates_nothing_acknowledged() {
    let mut postgres = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let database = postgres.fresh_database();
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = ["--postgres", database.as_str(), "--redis", &redis.url()];
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let nodes = [
        TestServer::start_with_args(&dir.path().join("a"), &fleet),
        TestServer::start_with_args(&dir.path().join("b"), &fleet),
    ];
    let api = Api::new(&nodes[0].url()).unwrap();
    let names = ["wt-a", "ws-a", "wt-b", "ws-b"];
    let mut tokens = Vec::new();
    for name in names {
        tokens.push(api.signup(name, PASSWORD).await.expect("signup").token);
    }
    let room = api.create_room(&tokens[0], "fleet").await.unwrap().id;
    let mut members = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let transport = if name.starts_with("wt") {
            TransportChoice::WebTransport
        } else {
            TransportChoice::WebSocket
        };
        let node = &nodes[i / 2];
        members.push(Member::join(&node.url(), name, &tokens[i], transport, room).await);
    }
    wait_until(Duration::from_secs(10), "everyone joined", || {
        members.iter().all(|m| m.record().joined)
    })
    .await;

    for round in 0..EACH {
        if round == STOP_AT {
            postgres.shut_down();
        }
        if round == STOP_AT + DOWN_ROUNDS {
            postgres.start_again();
        }
        for m in &members {
            m.send(format!("{} #{round}", m.name));
        }
        sleep(EVERY).await;
    }
    let settled = tokio::time::timeout(SETTLE, async {
        while !members.iter().all(Member::all_acked) {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if settled.is_err() {
        for m in &members {
            let r = m.record();
            eprintln!(
                "{}: sent {} acked {} disconnects {} trouble {:?}",
                m.name,
                r.sent.len(),
                r.acked.len(),
                r.disconnects,
                r.trouble
            );
        }
        let log = nodes[0].log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("node a's log (last lines first):\n{}", tail.join("\n"));
        panic!("not every send was acknowledged within {SETTLE:?}");
    }
    // What the outage may cause: streams ended with a retryable error (then rejoined).
    let mut refused = 0;
    for m in &members {
        m.record().trouble.retain(|t| {
            let retryable = t.contains(&format!("{:?}", ErrorCode::Internal));
            refused += usize::from(retryable);
            !retryable
        });
    }
    eprintln!("streams ended by the outage: {refused}");
    assert!(
        refused > 0,
        "the outage refused no send: the test proved nothing"
    );
    let acked = acknowledged(&members);
    assert_eq!(acked.len(), EACH * members.len());
    wait_until(SETTLE, "every member has every message", || {
        members
            .iter()
            .all(|m| m.record().messages.len() >= acked.len())
    })
    .await;
    for m in &members {
        let messages = m.record().messages.clone();
        assert_exactly_acknowledged(&m.name, &messages, &acked);
    }
}
