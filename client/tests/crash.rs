//! Crash: the server is SIGKILLed in the middle of a flood (several native clients on both
//! transports pipelining sends without waiting for acks) and restarted on the same data dir and
//! port; the clients reconnect and resend everything unacknowledged with the same client ids.
//! Afterwards the room's whole history, read back by a fresh client, holds every acknowledged
//! message exactly once with contiguous seqs (zero acknowledged loss, zero duplicates), and so
//! does a member that stayed joined throughout. A normal client chats all along; its ack
//! latency is printed. (`server/tests/durability.rs` covers graceful restarts; this is a kill
//! with writes in flight.)

mod recording;

use quibble_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quibble_client::{Api, TransportChoice};
use rand::{Rng, SeedableRng};
use recording::{Member, acknowledged, assert_exactly_acknowledged, wait_until};
use support::TestServer;
use tokio::time::{Instant, sleep};

const PASSWORD: &str = "correct horse battery";
/// The flooders.
const FLOODERS: [(&str, TransportChoice); 4] = [
    ("flood-wt-1", TransportChoice::WebTransport),
    ("flood-wt-2", TransportChoice::WebTransport),
    ("flood-ws-1", TransportChoice::WebSocket),
    ("flood-ws-2", TransportChoice::WebSocket),
];
/// Each flooder sends this many messages in bursts of `BURST` every `BURST_EVERY`, without
/// waiting for acks (the server's per-user burst allowance of 200 covers them all, and every
/// resend after the restart).
const FLOOD_EACH: usize = 180;
const BURST: usize = 20;
const BURST_EVERY: Duration = Duration::from_millis(100);
/// The normal client sends a message this often, throughout.
const CHAT_EVERY: Duration = Duration::from_millis(50);
/// The kill comes just after one of these bursts (picked at random, seeded), so that sends are
/// in flight.
const KILL_AFTER_BURST: std::ops::Range<usize> = 2..7;
/// How long every client may take to reconnect after the restart: at most one keep-alive
/// interval (10 s) for an idle one, plus backoff.
const RECONNECT: Duration = Duration::from_secs(15);
/// How long everything may take to settle after the restart.
const SETTLE: Duration = Duration::from_secs(30);

fn seed() -> u64 {
    std::env::var("QUIBBLE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_flood_loses_and_duplicates_nothing_acknowledged() {
    let seed = seed();
    eprintln!("crash seed {seed} (replay with QUIBBLE_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kill_burst = rng.random_range(KILL_AFTER_BURST);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let port = server.port;
    let url = server.url();
    let api = Api::new(&url).unwrap();

    let mut token = std::collections::HashMap::new();
    for name in FLOODERS
        .iter()
        .map(|(name, _)| *name)
        .chain(["chatter", "observer", "auditor"])
    {
        token.insert(
            name,
            api.signup(name, PASSWORD).await.expect("signup").token,
        );
    }
    let room = api
        .create_room(&token["chatter"], "flood")
        .await
        .unwrap()
        .id;
    let mut flooders = Vec::new();
    for (name, transport) in FLOODERS {
        flooders.push(Arc::new(
            Member::join(&url, name, &token[name], transport, room).await,
        ));
    }
    let chatter = Arc::new(
        Member::join(
            &url,
            "chatter",
            &token["chatter"],
            TransportChoice::Auto,
            room,
        )
        .await,
    );
    let observer = Member::join(
        &url,
        "observer",
        &token["observer"],
        TransportChoice::Auto,
        room,
    )
    .await;
    wait_until(Duration::from_secs(10), "everyone joined", || {
        flooders
            .iter()
            .map(|m| &**m)
            .chain([&*chatter, &observer])
            .all(|m| m.record().joined)
    })
    .await;

    // The normal client chats until told to stop.
    let chatting = Arc::new(AtomicBool::new(true));
    let chat = tokio::spawn({
        let (chatter, chatting) = (chatter.clone(), chatting.clone());
        async move {
            let mut i = 0;
            while chatting.load(Ordering::Relaxed) {
                chatter.send(format!("chat #{i}"));
                i += 1;
                sleep(CHAT_EVERY).await;
            }
        }
    });
    sleep(Duration::from_millis(500)).await;

    // The flood: every flooder pipelines bursts without waiting for acks, across the crash.
    let flood_started = Instant::now();
    let mut server = Some(server);
    let mut kill = None;
    for burst in 0..FLOOD_EACH / BURST {
        for m in &flooders {
            for i in burst * BURST..(burst + 1) * BURST {
                m.send(format!("{} #{i}", m.name));
            }
        }
        if burst == kill_burst {
            // Let the clients put the burst on the wire, then kill with it in flight.
            sleep(Duration::from_millis(2)).await;
            let killed_at = Instant::now();
            let in_flight: usize = flooders
                .iter()
                .map(|m| &**m)
                .chain([&*chatter])
                .map(|m| {
                    let r = m.record();
                    r.sent.len() - r.acked.len()
                })
                .sum();
            // SIGKILL (the guard kills on drop), then restart at once on the same dir and port.
            let (dir_path, old) = (dir.path().to_owned(), server.take());
            let new = tokio::task::spawn_blocking(move || {
                drop(old);
                TestServer::start_on(&dir_path, port)
            })
            .await
            .unwrap();
            server = Some(new);
            kill = Some((killed_at, Instant::now(), in_flight));
        }
        sleep(BURST_EVERY).await;
    }
    let flood_sent = flood_started.elapsed();
    let (killed_at, restarted_at, in_flight) = kill.expect("the server was killed");
    let server = server.expect("the server was restarted");
    let kill_after = killed_at - flood_started;

    // Every client is back soon after the restart (WebTransport ones included: the restarted
    // server resets their old connections instead of leaving them to the idle timeout).
    let everyone = || flooders.iter().map(|m| &**m).chain([&*chatter, &observer]);
    let back = |m: &Member| {
        m.record()
            .reconnected_at
            .iter()
            .any(|at| *at >= restarted_at)
    };
    let deadline = restarted_at + RECONNECT;
    while !everyone().all(back) && Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
    }
    let missing: Vec<_> = everyone().filter(|m| !back(m)).map(|m| &m.name).collect();
    assert!(
        missing.is_empty(),
        "not reconnected within {RECONNECT:?} of the restart: {missing:?}"
    );
    let reconnected = restarted_at.elapsed();
    wait_until(SETTLE, "every flooder's sends acked", || {
        flooders.iter().all(|m| m.all_acked())
    })
    .await;
    let flood_settled = flood_started.elapsed();
    chatting.store(false, Ordering::Relaxed);
    chat.await.unwrap();
    let settled = tokio::time::timeout(SETTLE, async {
        while !chatter.all_acked() {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    {
        let r = chatter.record();
        let mut pending: Vec<_> = r
            .sent
            .keys()
            .filter(|id| !r.acked.contains_key(id))
            .collect();
        pending.sort();
        assert!(
            settled.is_ok(),
            "chatter: {} sent, {} acked, {} disconnects, trouble {:?}, pending {:?}, transport {:?}\nserver log:\n{}",
            r.sent.len(),
            r.acked.len(),
            r.disconnects,
            r.trouble,
            pending,
            chatter.client.transport(),
            server.log_text()
        );
    }

    let mut members: Vec<Member> = flooders
        .into_iter()
        .map(|m| Arc::into_inner(m).expect("only the test holds a flooder"))
        .collect();
    members.push(Arc::into_inner(chatter).expect("chat task ended"));
    let acked = acknowledged(&members);
    let total = acked.len();
    let sent: usize = members.iter().map(|m| m.record().sent.len()).sum();
    assert_eq!(total, sent, "every send was acknowledged once");

    // A member that stayed joined, and a fresh client reading the store back.
    wait_until(SETTLE, "the observer caught up", || {
        observer.record().messages.len() >= total
    })
    .await;
    assert_exactly_acknowledged("observer", &observer.record().messages, &acked);
    let auditor = Member::join(
        &server.url(),
        "auditor",
        &token["auditor"],
        TransportChoice::WebSocket,
        room,
    )
    .await;
    wait_until(SETTLE, "the auditor's first page", || {
        auditor.record().messages.last().map(|m| m.seq) == Some(total as u64)
    })
    .await;
    let history = auditor.whole_history(SETTLE).await;
    assert_exactly_acknowledged("the store after the crash", &history, &acked);

    // The normal client's ack latency: before the kill (under the flood), and for the sends
    // made after the restart (under the resend flood).
    let chat = members.last().expect("chatter");
    // Sends made in [from, to) and acknowledged in [from, acked_by).
    let latencies = |from: Instant, to: Instant, acked_by: Instant| -> Vec<Duration> {
        let r = chat.record();
        let mut l: Vec<Duration> = r
            .sent
            .iter()
            .filter(|(id, s)| s.at >= from && s.at < to && r.acked[*id].at < acked_by)
            .map(|(id, s)| r.acked[id].at - s.at)
            .collect();
        l.sort();
        l
    };
    let flood_end = flood_started + flood_settled;
    let far = flood_end + SETTLE;
    let during = latencies(flood_started, killed_at, killed_at);
    let across = latencies(flood_started, killed_at, far).len() - during.len();
    let after = latencies(restarted_at, flood_end, far);
    eprintln!(
        "crash: killed {kill_after:?} into the flood with {in_flight} sends unacknowledged; \
         restart took {:?}; every client reconnected {reconnected:?} after it; flood of {} \
         sent in {flood_sent:?}, all acked {flood_settled:?} after it began; {total} messages in all; whole test {:?}",
        restarted_at - killed_at,
        FLOODERS.len() * FLOOD_EACH,
        started.elapsed()
    );
    eprintln!(
        "chatter ack latency under the flood before the kill: {}; {across} sends waited across \
         the restart; sent after the restart, under the resends: {}",
        summary(&during),
        summary(&after)
    );
    for m in members.iter().chain([&observer, &auditor]) {
        m.client.close().await;
    }
    assert!(in_flight > 0, "the kill came with nothing in flight");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// `n`, p50, p99 and max of sorted latencies.
fn summary(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "no samples".into();
    }
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        sorted.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}
