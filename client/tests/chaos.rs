//! Chaos: native clients on both transports chat in one room through a loopback proxy that
//! drops, delays, stalls and resets traffic at random (seeded; the seed is printed, and
//! `QUIBBLE_CHAOS_SEED=N` replays it). Once the faults stop and everyone has caught up, every
//! acknowledged message must be present exactly once, in seq order, at every member.

mod recording;

use quibble_test_support as support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use quibble_client::{Api, TransportChoice};
use recording::{Member, acknowledged, assert_exactly_acknowledged, wait_until};
use support::TestServer;
use support::proxy::{FaultProxy, Faults};
use tokio::time::{Instant, sleep};

const PASSWORD: &str = "correct horse battery";
/// Who chats, and over what.
const MEMBERS: [(&str, TransportChoice); 5] = [
    ("wt-ann", TransportChoice::WebTransport),
    ("wt-bob", TransportChoice::WebTransport),
    ("ws-cat", TransportChoice::WebSocket),
    ("ws-dan", TransportChoice::WebSocket),
    ("auto-eve", TransportChoice::Auto),
];
/// Messages each member sends, one every `SEND_EVERY`, while the faults are on.
const MESSAGES_EACH: usize = 60;
const SEND_EVERY: Duration = Duration::from_millis(200);
/// How long the faults last.
const FAULTS_FOR: Duration = Duration::from_secs(12);
/// How long everyone may take to catch up once the faults stop.
const CATCH_UP: Duration = Duration::from_secs(30);

fn seed() -> u64 {
    std::env::var("QUIBBLE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_arrives_once_in_order_through_faults() {
    let seed = seed();
    eprintln!("chaos seed {seed} (replay with QUIBBLE_CHAOS_SEED={seed})");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let upstream = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), server.port);
    // Same port number on another loopback address: `/api/cert` names the server's port, so
    // WebTransport clients dial the proxy's UDP side.
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), server.port);
    let proxy = FaultProxy::start(listen, upstream, Faults::default(), seed)
        .await
        .expect("start the proxy");
    let via_proxy = format!("http://{}", proxy.addr);

    let api = Api::new(&server.url()).unwrap();
    let mut tokens = Vec::new();
    for (name, _) in MEMBERS {
        tokens.push(api.signup(name, PASSWORD).await.expect("signup").token);
    }
    let room = api.create_room(&tokens[0], "storm").await.unwrap().id;
    let mut members = Vec::new();
    for ((name, transport), token) in MEMBERS.into_iter().zip(&tokens) {
        members.push(Member::join(&via_proxy, name, token, transport, room).await);
    }
    // Everyone joins the empty room before anything is sent, so every member must end up with
    // the whole history from seq 1.
    wait_until(Duration::from_secs(10), "every member joined", || {
        members.iter().all(|m| m.record().joined)
    })
    .await;

    proxy.set_faults(true);
    let faults_started = Instant::now();
    for i in 0..MESSAGES_EACH {
        for m in &members {
            m.send(format!("{} #{i}", m.name));
        }
        sleep(SEND_EVERY).await;
    }
    sleep(FAULTS_FOR.saturating_sub(faults_started.elapsed())).await;
    proxy.set_faults(false);
    let faults_ended = Instant::now();
    let stats = proxy.stats();

    let total = MEMBERS.len() * MESSAGES_EACH;
    wait_until(
        CATCH_UP,
        "every send acked and every message delivered",
        || {
            members
                .iter()
                .all(|m| m.all_acked() && m.record().messages.len() >= total)
        },
    )
    .await;
    eprintln!(
        "chaos: {total} messages; faults for {:?}: {stats:?}; everyone caught up {:?} after \
         the faults stopped; whole test {:?}",
        faults_ended - faults_started,
        faults_ended.elapsed(),
        started.elapsed()
    );

    let acked = acknowledged(&members);
    assert_eq!(acked.len(), total);
    for m in &members {
        let r = m.record();
        eprintln!("{}: {} disconnects", m.name, r.disconnects);
        assert_exactly_acknowledged(&m.name, &r.messages, &acked);
    }
    // The weather was real: connections were reset (so clients resumed and resent) and
    // datagrams were lost.
    assert!(stats.resets > 0 && stats.stalls > 0, "{stats:?}");
    assert!(stats.dropped > 0 && stats.blackouts > 0, "{stats:?}");
    let reconnected = members
        .iter()
        .filter(|m| m.record().disconnects > 0)
        .count();
    assert!(reconnected > 0, "no client was ever disconnected");

    for m in &members {
        m.client.close().await;
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
