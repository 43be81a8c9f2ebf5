//! Overload degrades instead of collapsing, on the real binary over loopback: when a room's
//! readers are mostly behind, the server refuses its senders (`RateLimited` with a hint, which
//! the native client obeys, resending in order) instead of cutting every reader; a single
//! member that does not read is still cut alone with `Lagged` while the others get everything.
//!
//! The load is relative, not a raw speed: the config lowers the high-water mark to a few KiB,
//! so messages published in one group commit put most readers past it on any machine, while
//! the caps that cut a stream (512 KiB per stream, 1 MiB per connection) stay as they are.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quibble_client::{
    ChatMessage, Client, ClientEvent, ClientOptions, ConversationId, Event, TransportChoice,
};
use quibble_protocol::mux::{self, Envelope};
use quibble_protocol::{ClientFrame, PROTOCOL_VERSION, ServerFrame, UserId, codec};
use support::{RawPeer, TestServer};
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

/// No per-user limit in the way; congestion at 4 KiB queued, refused senders told 10-20 ms.
const CONFIG: &str = "messages_per_second = 100000\nmessage_burst = 100000\n\
                      congested_queue_kib = 4\ncongestion_retry_ms = 10\n";
/// Bytes of each message's text.
const BODY: usize = 1000;
/// Bound on each test.
const TEST_TIME: Duration = Duration::from_secs(50);

/// A metric's value (summed over its labels), 0 if absent.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A room with `readers` raw readers (half WebSocket, half WebTransport) joined and reading in
/// tasks, and two native clients (one per transport) joined to flood it.
struct Room {
    server: TestServer,
    room: ConversationId,
    flooders: Vec<Flooder>,
    readers: Vec<JoinHandle<Vec<ChatMessage>>>,
    /// The seq every reader reads up to, once the flood is over.
    target: watch::Sender<Option<u64>>,
}

async fn room(dir: &tempfile::TempDir, readers: usize) -> Room {
    let server = TestServer::start_with_config(&dir.path().join("data"), CONFIG);
    let api = server.api();
    let owner = api.signup("owner").await;
    let room = api.create_room(&owner, "hot").await;
    let (target, target_rx) = watch::channel(None);
    let mut tasks = Vec::new();
    for i in 0..readers {
        let token = api.signup(&format!("reader{i}")).await;
        let mut peer = if i % 2 == 0 {
            RawPeer::websocket(&server).await
        } else {
            RawPeer::webtransport(&server).await
        };
        peer.hello(&token).await;
        peer.join(1, room, None).await;
        tasks.push(tokio::spawn(read_until(peer, target_rx.clone())));
    }
    let mut flooders = Vec::new();
    for (i, transport) in [TransportChoice::WebSocket, TransportChoice::WebTransport]
        .into_iter()
        .enumerate()
    {
        let token = api.signup(&format!("flooder{i}")).await;
        flooders.push(Flooder::join(&server, token, transport, room).await);
    }
    Room {
        server,
        room,
        flooders,
        readers: tasks,
        target,
    }
}

/// Read stream 1's live messages until the target seq, checking each comes once, in order;
/// being cut (`Lagged`) fails the test.
async fn read_until(
    mut peer: RawPeer,
    mut target: watch::Receiver<Option<u64>>,
) -> Vec<ChatMessage> {
    let mut got: Vec<ChatMessage> = Vec::new();
    loop {
        let last = got.last().map_or(0, |m| m.seq);
        let frame = tokio::select! {
            frame = peer.next_frame(1) => frame,
            _ = target.wait_for(|t| t.is_some_and(|t| last >= t)) => return got,
        };
        match frame {
            ServerFrame::Message(m) => {
                assert_eq!(m.seq, last + 1, "each message once, in order");
                got.push(m);
            }
            other => panic!("a reading member got {other:?} after {last}"),
        }
    }
}

/// A native client sending into the room, counting the refusals it obeyed.
struct Flooder {
    client: Client,
    /// Client id → the seq it was acknowledged with.
    acked: HashMap<u64, u64>,
    unanswered: usize,
    throttled: u64,
}

impl Flooder {
    async fn join(
        server: &TestServer,
        token: String,
        transport: TransportChoice,
        room: ConversationId,
    ) -> Flooder {
        let options = ClientOptions::new(server.http(), token).transport(transport);
        let client = Client::connect(options).await.expect("connect");
        client.join(room);
        let mut flooder = Flooder {
            client,
            acked: HashMap::new(),
            unanswered: 0,
            throttled: 0,
        };
        while !matches!(flooder.event().await, Event::Joined { .. }) {}
        flooder
    }

    async fn event(&mut self) -> Event {
        match timeout(support::WAIT, self.client.next_event()).await {
            Ok(Some(ClientEvent::Session(event))) => event,
            Ok(Some(ClientEvent::TransportChanged(_))) => Box::pin(self.event()).await,
            Ok(None) => panic!("the client stopped"),
            Err(_) => panic!("no event for {:?}", support::WAIT),
        }
    }

    fn send(&mut self, room: ConversationId, n: usize) {
        for _ in 0..n {
            self.client.send(room, "o".repeat(BODY));
            self.unanswered += 1;
        }
    }

    /// Handle events until fewer than `left` sends are unanswered.
    async fn settle(&mut self, left: usize) {
        while self.unanswered > left {
            match self.event().await {
                Event::Sent { client_id, seq, .. } => {
                    assert!(self.acked.insert(client_id, seq).is_none(), "acked twice");
                    self.unanswered -= 1;
                }
                Event::Throttled { .. } => self.throttled += 1,
                // Live traffic and social events; a rejoin (cut for lagging) is a failure.
                Event::Message(_)
                | Event::ConversationList(_)
                | Event::ConversationUpdated(_)
                | Event::Receipt { .. }
                | Event::Presence { .. }
                | Event::Typing { .. } => {}
                other => panic!("a flooder got {other:?}"),
            }
        }
    }
}

/// Every acknowledged message reached every reader once, in order, and each author's messages
/// in the order they were sent (the resends after refusals kept it).
fn check_deliveries(flooders: &[Flooder], reads: &[Vec<ChatMessage>]) -> u64 {
    let mut seqs: Vec<u64> = flooders
        .iter()
        .flat_map(|f| f.acked.values())
        .copied()
        .collect();
    seqs.sort_unstable();
    let total = seqs.len() as u64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "distinct seqs 1..=N");
    for read in reads {
        assert_eq!(read.len() as u64, total, "every acknowledged message");
        let mut last_id: HashMap<UserId, u64> = HashMap::new();
        for m in read {
            let before = last_id.insert(m.author, m.client_id);
            assert!(before < Some(m.client_id), "an author's messages in order");
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_room_refuses_senders_instead_of_cutting_its_readers() {
    const PER_FLOODER: usize = 400;
    timeout(TEST_TIME, async {
        let dir = tempfile::tempdir().unwrap();
        let mut room = room(&dir, 6).await;
        let id = room.room;
        for flooder in &mut room.flooders {
            flooder.send(id, PER_FLOODER);
        }
        for flooder in &mut room.flooders {
            flooder.settle(0).await;
        }
        let total = room.flooders.len() * PER_FLOODER;
        room.target.send_replace(Some(total as u64));
        let mut reads = Vec::new();
        for reader in room.readers.drain(..) {
            reads.push(reader.await.expect("reader"));
        }
        assert_eq!(check_deliveries(&room.flooders, &reads), total as u64);

        let throttled: u64 = room.flooders.iter().map(|f| f.throttled).sum();
        let congested = metric(&room.server, "quibble_sends_congested_total").await;
        eprintln!("{total} messages; {congested} sends refused for congestion, {throttled} obeyed");
        assert!(congested > 0.0, "the senders were refused");
        assert!(throttled > 0, "and the native client heard it");
        assert_eq!(
            metric(&room.server, "quibble_streams_lagged_total").await,
            0.0,
            "no reader was cut"
        );
    })
    .await
    .expect("the test ran out of time");
}

/// A WebSocket member that does not read: a tiny socket receive buffer, and nothing read
/// until the test says so.
struct Deaf {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl Deaf {
    async fn join(server: &TestServer, token: &str, room: ConversationId) -> Deaf {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket
            .connect(format!("127.0.0.1:{}", server.port).parse().unwrap())
            .await
            .unwrap();
        let url = format!("ws://127.0.0.1:{}/ws", server.port);
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        let mut deaf = Deaf { ws };
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        };
        let join = ClientFrame::Join {
            conversation: room,
            resume: None,
        };
        for (stream, frame) in [(0, hello), (1, join)] {
            let bytes = mux::wrap(stream, &codec::encode(&frame).unwrap());
            deaf.ws.send(Message::Binary(bytes.into())).await.unwrap();
        }
        deaf
    }

    /// Start reading: the next frame on stream 1, or `None` at its end.
    async fn next(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = timeout(support::WAIT, self.ws.next())
                .await
                .expect("the server sent nothing")
                .expect("the connection ended")
                .expect("read");
            let Message::Binary(data) = msg else {
                continue;
            };
            match mux::unwrap::<ServerFrame>(&data, usize::MAX).unwrap() {
                Envelope::Frame(1, frame) => return Some(frame),
                Envelope::Finish(1) => return None,
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_read_is_cut_alone_while_the_readers_get_everything() {
    timeout(TEST_TIME, async {
        let dir = tempfile::tempdir().unwrap();
        let mut room = room(&dir, 6).await;
        let id = room.room;
        let token = room.server.api().signup("deaf").await;
        let mut deaf = Deaf::join(&room.server, &token, id).await;
        sleep(Duration::from_millis(300)).await;

        // Flood until the deaf member's queue overflows.
        let started = Instant::now();
        let mut sent = 0;
        while metric(&room.server, "quibble_streams_lagged_total").await < 1.0 {
            assert!(
                sent < 20_000 && started.elapsed() < Duration::from_secs(30),
                "not cut after {sent} messages"
            );
            for flooder in &mut room.flooders {
                flooder.send(id, 100);
                sent += 100;
            }
            for flooder in &mut room.flooders {
                flooder.settle(50).await;
            }
        }
        for flooder in &mut room.flooders {
            flooder.settle(0).await;
        }
        let total = check_total(&room.flooders);
        room.target.send_replace(Some(total));
        let mut reads = Vec::new();
        for reader in room.readers.drain(..) {
            reads.push(reader.await.expect("reader"));
        }
        check_deliveries(&room.flooders, &reads);
        let lagged = metric(&room.server, "quibble_streams_lagged_total").await;
        eprintln!("{total} messages; {lagged} stream cut");
        assert_eq!(lagged, 1.0, "the deaf member alone was cut");

        // Reading at last, it finds its messages in order, then `Lagged` naming the last one
        // it got, then the end of its stream.
        let mut last = None;
        loop {
            match deaf.next().await {
                Some(ServerFrame::Joined { from_seq, .. }) => last = Some(from_seq),
                Some(ServerFrame::Message(m)) => {
                    assert_eq!(Some(m.seq - 1), last, "in order, no gap");
                    last = Some(m.seq);
                }
                Some(ServerFrame::Lagged { resume_from }) => {
                    assert_eq!(Some(resume_from), last);
                    assert!(resume_from < total, "it was cut before the end");
                    assert_eq!(deaf.next().await, None, "the stream ends after Lagged");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("the test ran out of time");
}

/// Messages acknowledged over all flooders.
fn check_total(flooders: &[Flooder]) -> u64 {
    flooders.iter().map(|f| f.acked.len() as u64).sum()
}

/// A connection the server ends while its peer reads nothing (here: its session signed out)
/// is torn down with its backlog still queued once the close's wait runs out; the queued-bytes
/// gauge, which every connection shares, keeps nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ended_with_a_backlog_leaves_the_queued_bytes_gauge_at_zero() {
    const QUEUED: &str = "quibble_outbound_queued_bytes";
    timeout(TEST_TIME, async {
        let dir = tempfile::tempdir().unwrap();
        let mut room = room(&dir, 2).await;
        let id = room.room;
        let token = room.server.api().signup("deaf").await;
        let _deaf = Deaf::join(&room.server, &token, id).await;
        sleep(Duration::from_millis(300)).await;

        // Flood until the deaf member's stream is cut: its connection holds a backlog then.
        let started = Instant::now();
        while metric(&room.server, "quibble_streams_lagged_total").await < 1.0 {
            assert!(started.elapsed() < Duration::from_secs(30), "never cut");
            for flooder in &mut room.flooders {
                flooder.send(id, 100);
            }
            for flooder in &mut room.flooders {
                flooder.settle(50).await;
            }
        }
        for flooder in &mut room.flooders {
            flooder.settle(0).await;
        }
        room.target.send_replace(Some(check_total(&room.flooders)));
        for reader in room.readers.drain(..) {
            reader.await.expect("reader");
        }
        let backlog = metric(&room.server, QUEUED).await;
        assert!(backlog > 0.0, "the deaf connection's backlog is counted");

        let (status, _) = room
            .server
            .api()
            .call("POST", "/api/logout", Some(&token), None)
            .await;
        assert_eq!(status, 204);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let queued = metric(&room.server, QUEUED).await;
            if queued == 0.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{queued} of {backlog} bytes still counted as queued after the connection ended"
            );
            sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the test ran out of time");
}
