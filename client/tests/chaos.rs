//! Chaos: native clients on both transports chat in one room through a loopback proxy that
//! drops, delays, stalls and resets traffic at random (seeded; the seed is printed, and
//! `QUIBBLE_CHAOS_SEED=N` replays it). Once the faults stop and everyone has caught up, every
//! acknowledged message must be present exactly once, in seq order, at every member.

use quibble_test_support as support;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quibble_client::{
    Api, ChatMessage, Client, ClientEvent, ClientOptions, ConversationId, Event, TransportChoice,
};
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
/// Messages each member sends, one every `SEND_EVERY`, all while the faults are on.
const MESSAGES_EACH: usize = 60;
const SEND_EVERY: Duration = Duration::from_millis(200);
/// How long the faults last (longer than the sending).
const FAULTS_FOR: Duration = Duration::from_secs(12);
/// How long everyone may take to catch up once the faults stop.
const CATCH_UP: Duration = Duration::from_secs(30);

/// What one member saw.
#[derive(Default)]
struct Record {
    /// client id → body, for every message this member sent.
    sent: HashMap<u64, String>,
    /// client id → acknowledged seq.
    acked: HashMap<u64, u64>,
    messages: Vec<ChatMessage>,
    joined: bool,
    disconnects: u32,
    /// Anything that must not happen: rejections, resets, stream errors.
    trouble: Vec<String>,
}

struct Member {
    name: &'static str,
    client: Arc<Client>,
    record: Arc<Mutex<Record>>,
}

fn seed() -> u64 {
    std::env::var("QUIBBLE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Take a member's events into its record until the client closes.
fn collect(client: Arc<Client>, record: Arc<Mutex<Record>>, room: ConversationId) {
    tokio::spawn(async move {
        while let Some(event) = client.next_event().await {
            let mut r = record.lock().unwrap();
            match event {
                ClientEvent::Session(Event::Message(m)) if m.conversation == room => {
                    r.messages.push(m)
                }
                ClientEvent::Session(Event::Sent { client_id, seq, .. }) => {
                    if r.acked.insert(client_id, seq).is_some() {
                        r.trouble.push(format!("client id {client_id} acked twice"));
                    }
                }
                ClientEvent::Session(Event::Joined { conversation, .. }) if conversation == room => {
                    r.joined = true
                }
                ClientEvent::Session(Event::Disconnected) => r.disconnects += 1,
                ClientEvent::Session(
                    e @ (Event::Rejected { .. } | Event::Reset { .. } | Event::Error { .. }),
                ) => r.trouble.push(format!("{e:?}")),
                _ => {}
            }
        }
    });
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
        let options = ClientOptions::new(&via_proxy, token).transport(transport);
        let client = Arc::new(Client::connect(options).await.expect("connect"));
        let record = Arc::new(Mutex::new(Record::default()));
        collect(client.clone(), record.clone(), room);
        client.join(room);
        members.push(Member {
            name,
            client,
            record,
        });
    }
    // Everyone joins the empty room before anything is sent, so every member must end up with
    // the whole history from seq 1.
    wait_until(Duration::from_secs(10), "every member joined", || {
        members.iter().all(|m| m.record.lock().unwrap().joined)
    })
    .await;
    sleep(Duration::from_millis(300)).await;

    proxy.set_faults(true);
    let faults_started = Instant::now();
    let mut senders = Vec::new();
    for member in &members {
        let (client, record, name) = (member.client.clone(), member.record.clone(), member.name);
        senders.push(tokio::spawn(async move {
            for i in 0..MESSAGES_EACH {
                let body = format!("{name} #{i}");
                {
                    // Recorded before its ack can arrive.
                    let mut r = record.lock().unwrap();
                    let id = client.send(room, body.clone());
                    r.sent.insert(id, body);
                }
                sleep(SEND_EVERY).await;
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    sleep(FAULTS_FOR.saturating_sub(faults_started.elapsed())).await;
    proxy.set_faults(false);
    let faults_ended = Instant::now();
    let stats = proxy.stats();

    let total = (MEMBERS.len() * MESSAGES_EACH) as u64;
    wait_until(CATCH_UP, "every send acked and every message delivered", || {
        members.iter().all(|m| {
            let r = m.record.lock().unwrap();
            r.acked.len() == r.sent.len() && r.messages.len() as u64 >= total
        })
    })
    .await;
    let caught_up = faults_ended.elapsed();
    eprintln!(
        "chaos: {total} messages; faults for {:?}: {stats:?}; caught up {caught_up:?} after; \
         whole test {:?}",
        faults_ended - faults_started,
        started.elapsed()
    );

    // Every acknowledged message, by (author, client id): its seq and body.
    let mut acked: HashMap<(String, u64), (u64, String)> = HashMap::new();
    let mut by_seq: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    for m in &members {
        let r = m.record.lock().unwrap();
        eprintln!(
            "{}: {} disconnects, {} messages",
            m.name,
            r.disconnects,
            r.messages.len()
        );
        assert!(r.trouble.is_empty(), "{}: {:?}", m.name, r.trouble);
        for (&id, &seq) in &r.acked {
            acked.insert((m.name.to_owned(), id), (seq, r.sent[&id].clone()));
            let earlier = by_seq.insert(seq, (m.name.to_owned(), id));
            assert!(earlier.is_none(), "seq {seq} acknowledged twice");
        }
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "the acknowledged seqs are 1..={total}"
    );
    for m in &members {
        let r = m.record.lock().unwrap();
        let seqs: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=total).collect::<Vec<_>>(),
            "{}: every seq once, in order",
            m.name
        );
        for message in &r.messages {
            let key = (message.author_name.clone(), message.client_id);
            let (seq, body) = acked
                .get(&key)
                .unwrap_or_else(|| panic!("{}: unacknowledged {message:?}", m.name));
            assert_eq!((message.seq, &message.body), (*seq, body), "{}", m.name);
        }
    }
    // The weather was real: connections were reset (so clients resumed and resent) and
    // datagrams were lost.
    assert!(stats.resets > 0 && stats.stalls > 0, "{stats:?}");
    assert!(stats.dropped > 0 && stats.blackouts > 0, "{stats:?}");
    let reconnected = members
        .iter()
        .filter(|m| m.record.lock().unwrap().disconnects > 0)
        .count();
    assert!(reconnected > 0, "no client was ever disconnected");

    for m in &members {
        m.client.close().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        sleep(Duration::from_millis(50)).await;
    }
}
