//! Flow control against hostile and careless peers, on the real binary over loopback: what
//! the server holds for peers that do not read is bounded in bytes (measured as the server's
//! RSS and its `quibble_outbound_queued_bytes` gauge), a lagging stream really receives
//! `Lagged`, the fan-out hub forgets conversations nobody listens to, any traffic proves
//! liveness, WebSocket stream ids follow the protocol's rule, and an oversized WebSocket
//! message gets its close code.

mod support;

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use quibble_protocol::codec;
use quibble_protocol::mux::{self, Envelope};
use quibble_protocol::{ClientFrame, ConversationId, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use support::{RawPeer, Received, TestServer};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The server's caps (server/src/chat/outbound.rs), and what its writer may hold on top of a
/// full stream queue (a write batch of 64 KiB, overshooting by at most one frame).
const STREAM_QUEUE_BYTES: f64 = 512.0 * 1024.0;
const CONNECTION_QUEUE_BYTES: f64 = 1024.0 * 1024.0;
const WRITE_BATCH: f64 = 72.0 * 1024.0;
const MIB: u64 = 1024 * 1024;

fn start(dir: &tempfile::TempDir, config: &str) -> TestServer {
    TestServer::start_with_config(&dir.path().join("data"), config)
}

const NO_SEND_LIMIT: &str = "messages_per_second = 100000\nmessage_burst = 100000\n";

/// A server without a send limit, one room holding 50 messages of 4 KB written by `user`,
/// and that user's token, the room and the writing connection (joined on stream 1).
async fn room_of_big_messages(
    dir: &tempfile::TempDir,
    user: &str,
) -> (TestServer, String, ConversationId, RawPeer) {
    let server = start(dir, NO_SEND_LIMIT);
    let api = server.api();
    let token = api.signup(user).await;
    let room = api.create_room(&token, "lobby").await;
    let mut writer = RawPeer::websocket(&server).await;
    writer.hello(&token).await;
    writer.join(1, room, None).await;
    let body = "h".repeat(4000);
    for id in 0..50 {
        writer.say(1, id, &body).await;
    }
    (server, token, room, writer)
}

/// The server's resident memory, in bytes.
fn rss(server: &TestServer) -> u64 {
    support::proc_status(server.pid()).rss
}

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

fn frame(f: &ClientFrame) -> Vec<u8> {
    codec::encode(f).unwrap()
}

/// A WebSocket peer that stops reading: a tiny socket receive buffer, and its read half is
/// left alone until the test says so.
struct DeafPeer {
    sink: SplitSink<WebSocketStream<TcpStream>, Message>,
    source: SplitStream<WebSocketStream<TcpStream>>,
}

impl DeafPeer {
    async fn connect(server: &TestServer, token: &str) -> DeafPeer {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket
            .connect(format!("127.0.0.1:{}", server.port).parse().unwrap())
            .await
            .unwrap();
        let url = format!("ws://127.0.0.1:{}/ws", server.port);
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        let (sink, source) = ws.split();
        let mut peer = DeafPeer { sink, source };
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        };
        assert!(peer.send(0, &hello).await);
        peer
    }

    /// Send a frame; false if the server did not take it within a second (it stopped
    /// reading us, as it should once our queues are full).
    async fn send(&mut self, stream: u64, f: &ClientFrame) -> bool {
        let msg = Message::Binary(mux::wrap(stream, &frame(f)).into());
        matches!(
            timeout(Duration::from_secs(1), self.sink.send(msg)).await,
            Ok(Ok(()))
        )
    }

    /// Queue `n` Pings and flush; false if the server did not take them within a second.
    async fn pings(&mut self, n: u64) -> bool {
        let burst = async {
            for i in 0..n {
                // Large nonces make large Pongs: the server's buffers fill sooner.
                let ping = frame(&ClientFrame::Ping {
                    nonce: u64::MAX - i,
                });
                self.sink
                    .feed(Message::Binary(mux::wrap(0, &ping).into()))
                    .await?;
            }
            self.sink.flush().await
        };
        matches!(timeout(Duration::from_secs(1), burst).await, Ok(Ok(())))
    }

    /// Start reading: the next frame or end on `stream`, skipping other streams.
    async fn next_on(&mut self, stream: u64) -> Option<ServerFrame> {
        loop {
            let msg = timeout(Duration::from_secs(10), self.source.next())
                .await
                .expect("the server sent nothing for 10 s")
                .expect("the connection ended")
                .expect("read");
            let Message::Binary(data) = msg else {
                panic!("unexpected {msg:?}");
            };
            match mux::unwrap::<ServerFrame>(&data, usize::MAX).unwrap() {
                Envelope::Frame(id, f) if id == stream => return Some(f),
                Envelope::Finish(id) if id == stream => return None,
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn history_requests_from_peers_that_do_not_read_stay_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token, room, mut writer) = room_of_big_messages(&dir, "alice").await;
    let before = rss(&server);

    // Two connections × 16 streams × 100 requests for a page of 50 × 4 KB (~200 KB each):
    // ~650 MB of answers if the server made them all up front.
    let mut peers = Vec::new();
    for _ in 0..2 {
        let mut peer = DeafPeer::connect(&server, &token).await;
        'streams: for stream in 1..=16 {
            let join = ClientFrame::Join {
                conversation: room,
                resume: None,
            };
            if !peer.send(stream, &join).await {
                break;
            }
            for _ in 0..100 {
                let history = ClientFrame::History {
                    before_seq: u64::MAX,
                    limit: 50,
                };
                if !peer.send(stream, &history).await {
                    break 'streams;
                }
            }
        }
        peers.push(peer);
    }
    let (mut peak_rss, mut peak_queued) = (0, 0.0f64);
    for _ in 0..10 {
        sleep(Duration::from_millis(300)).await;
        peak_rss = peak_rss.max(rss(&server));
        peak_queued = peak_queued.max(metric(&server, "quibble_outbound_queued_bytes").await);
    }
    let grown = peak_rss.saturating_sub(before);
    eprintln!(
        "RSS grew {} KiB, peak queued {peak_queued} bytes",
        grown / 1024
    );
    assert!(
        peak_queued <= 2.0 * CONNECTION_QUEUE_BYTES,
        "queued {peak_queued} bytes for two connections"
    );
    assert!(grown < 64 * MIB, "RSS grew {} MiB", grown / MIB);

    // A normal reader is served meanwhile.
    writer.join(2, room, None).await;
    writer
        .send(
            2,
            &ClientFrame::History {
                before_seq: 11,
                limit: 10,
            },
        )
        .await;
    match writer.next_frame(2).await {
        ServerFrame::HistoryPage { messages, .. } => assert_eq!(messages.len(), 10),
        other => panic!("expected a history page, got {other:?}"),
    }
    drop(peers);
}

#[tokio::test]
async fn a_flooded_room_cuts_peers_that_do_not_read_with_a_lagged_they_receive() {
    const DEAF: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, NO_SEND_LIMIT);
    let api = server.api();
    let token = api.signup("flooder").await;
    let deaf_token = api.signup("deaf").await;
    let room = api.create_room(&token, "lobby").await;
    let mut flooder = RawPeer::websocket(&server).await;
    flooder.hello(&token).await;
    flooder.join(1, room, None).await;
    let mut deaf = Vec::new();
    for _ in 0..DEAF {
        let mut peer = DeafPeer::connect(&server, &deaf_token).await;
        let join = ClientFrame::Join {
            conversation: room,
            resume: None,
        };
        assert!(peer.send(1, &join).await);
        deaf.push(peer);
    }
    sleep(Duration::from_millis(500)).await;
    let before = rss(&server);

    let body = "f".repeat(4000);
    let (mut peak_rss, mut peak_queued) = (0, 0.0f64);
    let mut sent = 0u64;
    let started = Instant::now();
    while metric(&server, "quibble_streams_lagged_total").await < DEAF as f64 {
        assert!(
            sent < 20_000 && started.elapsed() < Duration::from_secs(40),
            "no lag after {sent} messages"
        );
        // overload: while the deaf peers still count as readers that are behind (until they
        // have not drained for a while), the room refuses sends (`RateLimited`); the flooder
        // resends those, in order, after a pause.
        let mut batch: Vec<u64> = (sent + 1..=sent + 100).collect();
        sent += 100;
        while !batch.is_empty() {
            for &client_id in &batch {
                flooder
                    .send(
                        1,
                        &ClientFrame::Send {
                            client_id,
                            body: body.clone(),
                        },
                    )
                    .await;
            }
            let (mut answered, mut refused) = (0, Vec::new());
            while answered < batch.len() {
                match flooder.next_frame(1).await {
                    ServerFrame::Sent { .. } => answered += 1,
                    ServerFrame::Rejected {
                        client_id,
                        code: ErrorCode::RateLimited,
                        ..
                    } => {
                        answered += 1;
                        refused.push(client_id);
                    }
                    _ => {}
                }
            }
            refused.sort_unstable();
            batch = refused;
            if !batch.is_empty() {
                sleep(Duration::from_millis(20)).await;
            }
        }
        peak_rss = peak_rss.max(rss(&server));
        peak_queued = peak_queued.max(metric(&server, "quibble_outbound_queued_bytes").await);
        let grown = peak_rss.saturating_sub(before);
        assert!(grown < 64 * MIB, "RSS grew {} MiB", grown / MIB);
    }
    let grown = peak_rss.saturating_sub(before);
    eprintln!(
        "{sent} messages; RSS grew {} KiB; peak queued {peak_queued} bytes",
        grown / 1024
    );
    assert!(
        peak_queued <= DEAF as f64 * (STREAM_QUEUE_BYTES + WRITE_BATCH) + CONNECTION_QUEUE_BYTES,
        "queued {peak_queued} bytes"
    );

    // Each deaf peer, reading again, finds its messages in order, then `Lagged` naming the
    // last one it got, then the end of the stream.
    for mut peer in deaf {
        let mut last = None;
        loop {
            match peer.next_on(1).await {
                Some(ServerFrame::Joined { from_seq, .. }) => last = Some(from_seq),
                Some(ServerFrame::Message(m)) => {
                    assert_eq!(Some(m.seq - 1), last, "in order, no gap");
                    last = Some(m.seq);
                }
                Some(ServerFrame::Lagged { resume_from }) => {
                    assert_eq!(Some(resume_from), last);
                    assert_eq!(peer.next_on(1).await, None, "the stream ends after Lagged");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn the_hub_forgets_conversations_when_their_last_subscriber_leaves() {
    const ROOMS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "rooms_per_hour = 100000\nroom_burst = 100000\n");
    let api = server.api();
    let token = api.signup("owner").await;
    let mut rooms = Vec::new();
    for chunk in 0..ROOMS / 50 {
        let names: Vec<String> = (0..50).map(|i| format!("room-{chunk}-{i}")).collect();
        let made =
            futures_util::future::join_all(names.iter().map(|name| api.create_room(&token, name)))
                .await;
        rooms.extend(made);
    }
    let before = rss(&server);

    // Twenty connections join 50 rooms each (within the 64 streams a connection may hold),
    // then leave: half with `Leave`, half by closing.
    const PER_PEER: usize = 50;
    let mut peers = Vec::new();
    for part in rooms.chunks(PER_PEER) {
        let mut peer = RawPeer::websocket(&server).await;
        peer.hello(&token).await;
        for (i, room) in part.iter().enumerate() {
            peer.join(i as u64 + 1, *room, None).await;
        }
        peers.push(peer);
    }
    let joined = metric(&server, "quibble_hub_conversations").await;
    for (n, mut peer) in peers.into_iter().enumerate() {
        if n % 2 == 0 {
            for stream in 1..=PER_PEER as u64 {
                peer.send(stream, &ClientFrame::Leave).await;
                assert!(matches!(peer.next_on(stream).await, Received::Finished(_)));
            }
        } else {
            peer.close().await;
        }
    }
    sleep(Duration::from_millis(500)).await;
    let grown = rss(&server).saturating_sub(before);
    eprintln!(
        "RSS grew {} KiB after joining and leaving {ROOMS} rooms",
        grown / 1024
    );
    assert!(grown < 32 * MIB, "RSS grew {} MiB", grown / MIB);
    assert_eq!(joined, ROOMS as f64, "every joined room had a hub entry");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "quibble_hub_conversations").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the hub still holds conversations"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn any_traffic_proves_liveness_and_only_silence_closes() {
    let dir = tempfile::tempdir().unwrap();
    // Pings every second; silence for 3 s closes.
    let server = start(&dir, "heartbeat_ms = 1000\n");
    let api = server.api();
    let token = api.signup("chatty").await;
    let room = api.create_room(&token, "lobby").await;
    for websocket in [false, true] {
        // Connect each only when its turn comes: a connection waiting without Hello is closed.
        let mut peer = if websocket {
            RawPeer::websocket(&server).await
        } else {
            RawPeer::webtransport(&server).await
        };
        peer.hello(&token).await;
        peer.join(1, room, None).await;
        // 4.5 s of messages and no Ping.
        let started = Instant::now();
        let mut id = 0;
        while started.elapsed() < Duration::from_millis(4500) {
            id += 1;
            peer.say(1, id, "still here").await;
            sleep(Duration::from_millis(100)).await;
        }
        peer.send(0, &ClientFrame::Ping { nonce: 1 }).await;
        assert_eq!(peer.next_frame(0).await, ServerFrame::Pong { nonce: 1 });
        // Now silence: closed.
        let closed = timeout(Duration::from_secs(8), async {
            loop {
                if let Received::Closed(_) = peer.next_on(u64::MAX).await {
                    return;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a silent connection is closed");
    }
}

async fn expect_error(peer: &mut RawPeer, stream: u64, code: ErrorCode) -> String {
    match peer.next_frame(stream).await {
        ServerFrame::Error { code: got, reason } => {
            assert_eq!(got, code, "{reason}");
            reason
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_stream_ids_are_freed_when_either_side_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    let api = server.api();
    let token = api.signup("switcher").await;
    let room = api.create_room(&token, "lobby").await;
    let mut peer = RawPeer::websocket(&server).await;
    peer.hello(&token).await;
    let mut id = 0;
    // 300 refused Joins (the server ends each stream)...
    for _ in 0..300 {
        id += 1;
        peer.send(
            id,
            &ClientFrame::Join {
                conversation: ConversationId(999_999),
                resume: None,
            },
        )
        .await;
        expect_error(&mut peer, id, ErrorCode::UnknownConversation).await;
        assert!(matches!(peer.next_on(id).await, Received::Finished(_)));
    }
    // ... and 300 room switches (Leave: the server ends each stream) ...
    for _ in 0..300 {
        id += 1;
        peer.join(id, room, None).await;
        peer.send(id, &ClientFrame::Leave).await;
        assert!(matches!(peer.next_on(id).await, Received::Finished(_)));
    }
    // ... leave every id free: a new stream opens.
    id += 1;
    peer.join(id, room, None).await;
    let seq = peer.say(id, 1, "after 600 streams").await;
    assert_eq!(seq, 1);
}

#[tokio::test]
async fn a_join_on_a_closed_websocket_stream_id_is_refused_and_other_frames_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    let api = server.api();
    let token = api.signup("reuser").await;
    let room = api.create_room(&token, "lobby").await;
    let mut peer = RawPeer::websocket(&server).await;
    peer.hello(&token).await;
    peer.join(1, room, None).await;
    peer.send(1, &ClientFrame::Leave).await;
    assert!(matches!(peer.next_on(1).await, Received::Finished(1)));

    let join = ClientFrame::Join {
        conversation: room,
        resume: None,
    };
    peer.send(1, &join).await;
    let reason = expect_error(&mut peer, 1, ErrorCode::ProtocolViolation).await;
    assert_eq!(reason, "stream id 1 is closed; open a new id");
    assert!(matches!(peer.next_on(1).await, Received::Finished(1)));

    // Anything else on the closed id is dropped without an answer; the connection is fine.
    peer.send(
        1,
        &ClientFrame::Send {
            client_id: 1,
            body: "late".into(),
        },
    )
    .await;
    peer.send(0, &ClientFrame::Ping { nonce: 5 }).await;
    match peer.received.recv().await {
        Some(Received::Frame(0, ServerFrame::Pong { nonce: 5 })) => {}
        other => panic!("expected only the Pong, got {other:?}"),
    }
    // Ids below the highest opened are over too, even if never used; new ids open streams.
    peer.join(3, room, None).await;
    peer.send(2, &join).await;
    expect_error(&mut peer, 2, ErrorCode::ProtocolViolation).await;
    peer.join(4, room, None).await;
    let (_, rooms) = api.call("GET", "/api/rooms", Some(&token), None).await;
    assert_eq!(
        rooms["rooms"][0]["head_seq"].as_u64(),
        Some(0),
        "nothing stored"
    );
}

#[tokio::test]
async fn an_oversized_websocket_message_gets_close_code_frame_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    let token = server.api().signup("big").await;
    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        token,
    };
    ws.send(Message::Binary(mux::wrap(0, &frame(&hello)).into()))
        .await
        .unwrap();
    let mut big = mux::wrap(0, &[]);
    big.resize(300 * 1024, 0);
    ws.send(Message::Binary(big.into())).await.unwrap();
    let close = timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time")
    .expect("with a code");
    assert_eq!(
        u16::from(close.code),
        ErrorCode::FrameTooLarge.ws_close_code()
    );
    assert!(!close.reason.is_empty());
}

#[tokio::test]
async fn a_control_stream_that_is_not_read_ends_the_connection_with_slow_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    let token = server.api().signup("pinger").await;
    let mut peer = DeafPeer::connect(&server, &token).await;
    let slow = "quibble_connection_errors_total{code=\"slow_consumer\"}";
    let started = Instant::now();
    let before = rss(&server);
    while metric(&server, slow).await < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still served after 30 s of pings nobody reads"
        );
        peer.pings(10_000).await;
        let grown = rss(&server).saturating_sub(before);
        assert!(grown < 32 * MIB, "RSS grew {} MiB", grown / MIB);
    }
    // Reading again, the peer finds its Pongs, then the close with the code.
    let code = timeout(Duration::from_secs(20), async {
        loop {
            match peer.source.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(code, Some(ErrorCode::SlowConsumer.ws_close_code()));
}

#[tokio::test]
async fn frames_received_faster_than_they_are_handled_stay_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token, room, mut writer) = room_of_big_messages(&dir, "pusher").await;
    let before = rss(&server);

    // On each of 48 streams: History requests nobody reads the answers to (so the stream's
    // handler waits for room), then 12 frames of ~200 KB that it cannot take yet: ~115 MB
    // if the server held every frame it was sent.
    let mut peer = DeafPeer::connect(&server, &token).await;
    let big = ClientFrame::Send {
        client_id: 1,
        body: "b".repeat(200_000),
    };
    let history = ClientFrame::History {
        before_seq: u64::MAX,
        limit: 50,
    };
    'streams: for stream in 1..=48 {
        let join = ClientFrame::Join {
            conversation: room,
            resume: None,
        };
        let frames = [join, history.clone(), history.clone(), history.clone()];
        for f in frames.iter().chain(std::iter::repeat_n(&big, 12)) {
            if !peer.send(stream, f).await {
                break 'streams;
            }
        }
    }
    let mut peak = 0;
    for _ in 0..10 {
        sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss(&server));
    }
    let grown = peak.saturating_sub(before);
    eprintln!("RSS grew {} KiB", grown / 1024);
    assert!(grown < 64 * MIB, "RSS grew {} MiB", grown / MIB);
    // The server still serves others.
    writer.send(0, &ClientFrame::Ping { nonce: 9 }).await;
    assert_eq!(writer.next_frame(0).await, ServerFrame::Pong { nonce: 9 });
}
