//! Realtime chat against a real server process over both transports, with raw protocol peers:
//! fan-out across WebTransport and WebSocket, history on join, resume, idempotent resends.

mod support;

use quibble_protocol::{ClientFrame, Cursor, ServerFrame};
use support::{RawPeer, TestServer};

#[tokio::test]
async fn webtransport_and_websocket_users_chat_in_one_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb, tc) = (
        api.signup("alice").await,
        api.signup("bob").await,
        api.signup("carol").await,
    );
    let room = api.create_room(&ta, "lobby").await;

    let mut alice = RawPeer::webtransport(&server).await;
    let mut bob = RawPeer::webtransport(&server).await;
    let mut carol = RawPeer::websocket(&server).await;
    for (peer, name) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        let token = match name {
            "alice" => &ta,
            "bob" => &tb,
            _ => &tc,
        };
        match peer.hello(token).await {
            ServerFrame::Welcome { username, .. } => assert_eq!(username, name),
            other => panic!("expected Welcome, got {other:?}"),
        }
        peer.join(1, room, None).await;
    }

    let seq = alice.say(1, 1, "hi from webtransport").await;
    assert_eq!(seq, 1);
    for peer in [&mut bob, &mut carol] {
        let m = peer.next_message(1).await;
        assert_eq!(
            (m.seq, m.author_name.as_str(), m.body.as_str()),
            (1, "alice", "hi from webtransport")
        );
    }
    let m = alice.next_message(1).await;
    assert_eq!(
        m.body, "hi from webtransport",
        "the sender sees its own message"
    );

    let seq = carol.say(1, 1, "hi from websocket").await;
    assert_eq!(seq, 2);
    for peer in [&mut alice, &mut bob] {
        let m = peer.next_message(1).await;
        assert_eq!(
            (m.seq, m.author_name.as_str(), m.body.as_str()),
            (2, "carol", "hi from websocket")
        );
    }
    let seq = bob.say(1, 9, "and bob").await;
    assert_eq!(seq, 3);
    assert_eq!(carol.next_message(1).await.body, "hi from websocket");
    assert_eq!(carol.next_message(1).await.body, "and bob");
}

#[tokio::test]
async fn late_joiner_gets_history_and_resume_replays_exactly_what_was_missed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let room = api.create_room(&ta, "lobby").await;

    let mut alice = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome { epoch, .. } = alice.hello(&ta).await else {
        panic!("no welcome")
    };
    alice.join(1, room, None).await;
    for i in 1..=60u64 {
        assert_eq!(alice.say(1, i, &format!("m{i}")).await, i);
    }

    // A late joiner gets the most recent page, then pages back for older history.
    let mut bob = RawPeer::webtransport(&server).await;
    bob.hello(&tb).await;
    let (joined, recent) = bob.join(1, room, None).await;
    assert!(
        matches!(
            joined,
            ServerFrame::Joined {
                head_seq: 60,
                from_seq: 10,
                ..
            }
        ),
        "{joined:?}"
    );
    assert_eq!(
        recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (11..=60).collect::<Vec<_>>()
    );
    bob.send(
        1,
        &ClientFrame::History {
            before_seq: 11,
            limit: 50,
        },
    )
    .await;
    match bob.next_frame(1).await {
        ServerFrame::HistoryPage {
            messages, has_more, ..
        } => {
            assert_eq!(
                messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
                (1..=10).collect::<Vec<_>>()
            );
            assert_eq!(messages[0].body, "m1");
            assert!(!has_more);
        }
        other => panic!("expected a history page, got {other:?}"),
    }
    bob.close().await;

    // Bob was away for 61..=65; resuming from (epoch, 60) replays exactly those, then live.
    for i in 61..=65u64 {
        alice.say(1, i, &format!("m{i}")).await;
    }
    let mut bob = RawPeer::websocket(&server).await;
    bob.hello(&tb).await;
    let (joined, missed) = bob.join(1, room, Some(Cursor { epoch, seq: 60 })).await;
    assert!(
        matches!(
            joined,
            ServerFrame::Joined {
                head_seq: 65,
                from_seq: 60,
                ..
            }
        ),
        "{joined:?}"
    );
    assert_eq!(
        missed.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["m61", "m62", "m63", "m64", "m65"]
    );
    alice.say(1, 66, "live").await;
    let live = bob.next_message(1).await;
    assert_eq!((live.seq, live.body.as_str()), (66, "live"));

    // A cursor from another epoch is not trusted: the client gets a fresh recent page.
    let mut carol = RawPeer::webtransport(&server).await;
    carol.hello(&tb).await;
    let (joined, _) = carol
        .join(
            1,
            room,
            Some(Cursor {
                epoch: epoch ^ 1,
                seq: 64,
            }),
        )
        .await;
    assert!(
        matches!(joined, ServerFrame::Joined { from_seq: 16, .. }),
        "{joined:?}"
    );
}

#[tokio::test]
async fn a_resend_with_the_same_client_id_is_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let token = api.signup("alice").await;
    let room = api.create_room(&token, "lobby").await;

    let mut first = RawPeer::webtransport(&server).await;
    first.hello(&token).await;
    first.join(1, room, None).await;
    assert_eq!(first.say(1, 42, "only once").await, 1);
    first.close().await;

    // Reconnected (other transport even): the same client id gets the original seq back.
    let mut again = RawPeer::websocket(&server).await;
    again.hello(&token).await;
    let (_, history) = again.join(1, room, None).await;
    assert_eq!(history.len(), 1);
    again
        .send(
            1,
            &ClientFrame::Send {
                client_id: 42,
                body: "only once".into(),
            },
        )
        .await;
    match again.next_frame(1).await {
        ServerFrame::Sent {
            client_id: 42,
            seq: 1,
            ..
        } => {}
        other => panic!("expected the original ack, got {other:?}"),
    }
    assert_eq!(
        again.say(1, 43, "next").await,
        2,
        "no seq was spent on the duplicate"
    );
    let (status, rooms) = api.call("GET", "/api/rooms", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(rooms["rooms"][0]["head_seq"].as_u64(), Some(2));
}

#[tokio::test]
async fn pipelined_sends_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let tokens = [api.signup("alice").await, api.signup("bob").await];
    let room = api.create_room(&tokens[0], "lobby").await;
    for (round, mut peer) in [
        RawPeer::webtransport(&server).await,
        RawPeer::websocket(&server).await,
    ]
    .into_iter()
    .enumerate()
    {
        // One user per round: each has its own rate quota.
        peer.hello(&tokens[round]).await;
        peer.join(1, room, None).await;
        let base = round as u64 * 150;
        // All sends go out before any ack is read, so many are in flight at once.
        for i in 1..=150u64 {
            peer.send(
                1,
                &ClientFrame::Send {
                    client_id: base + i,
                    body: format!("n{}", base + i),
                },
            )
            .await;
        }
        let mut acked = 0;
        while acked < 150 {
            match peer.next_frame(1).await {
                ServerFrame::Sent { client_id, seq, .. } => {
                    assert_eq!(seq, client_id, "seq follows send order");
                    acked += 1;
                }
                ServerFrame::Message(m) => assert_eq!(m.body, format!("n{}", m.seq)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// RFC 6455 §5.5.1: a close frame from the client is answered with a close frame, so the
/// client sees a clean close (1000), not an abrupt end (1006).
#[tokio::test]
async fn a_websocket_close_from_the_client_is_answered_with_a_close() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let token = server.api().signup("closer").await;
    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    support::live::raw_ws_hello(&mut ws, &token).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let answer = loop {
        match tokio::time::timeout(support::WAIT, ws.next())
            .await
            .expect("the server answers the close in time")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    };
    let code = answer.map(|f| u16::from(f.code));
    assert!(
        matches!(code, None | Some(1000)),
        "close answered with {code:?}"
    );
}
