//! Bad input on the realtime transports: bad tokens, frames out of place, malformed and
//! oversized frames, unknown conversations, invalid messages. Each gets its error code, only
//! the offending stream or connection closes, and the server keeps serving.

mod support;

use quibble_protocol::codec::write_varint;
use quibble_protocol::limits::{MAX_BODY_LEN, MAX_FRAME_LEN};
use quibble_protocol::{ClientFrame, ConversationId, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use support::{RawPeer, Received, TestServer};

async fn peers(server: &TestServer) -> Vec<RawPeer> {
    vec![
        RawPeer::webtransport(server).await,
        RawPeer::websocket(server).await,
    ]
}

/// The connection ends with `code` (WebSocket close codes are offset by 4000).
async fn expect_closed(peer: &mut RawPeer, code: ErrorCode) {
    let want = if peer.is_websocket() {
        u32::from(code.ws_close_code())
    } else {
        code.as_u32()
    };
    loop {
        match peer.next_on(u64::MAX).await {
            Received::Closed(got) => {
                assert_eq!(got, Some(want), "close code");
                return;
            }
            Received::Frame(..) | Received::Finished(_) => {}
        }
    }
}

fn expect_error(frame: ServerFrame, code: ErrorCode) {
    match frame {
        ServerFrame::Error { code: got, reason } => {
            assert_eq!(got, code, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// The server still serves a normal chat after whatever a test did.
async fn still_works(server: &TestServer, token: &str, room: ConversationId) {
    for mut peer in peers(server).await {
        assert!(matches!(
            peer.hello(token).await,
            ServerFrame::Welcome { .. }
        ));
        let (_, history) = peer.join(1, room, None).await;
        let seq = peer.say(1, rand_id(), "still here").await;
        assert!(seq > history.last().map_or(0, |m| m.seq));
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1_000_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn connection_level_errors_close_the_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let token = api.signup("alice").await;
    let room = api.create_room(&token, "lobby").await;

    for mut peer in peers(&server).await {
        expect_error(
            peer.hello("not a real token").await,
            ErrorCode::Unauthorized,
        );
        expect_closed(&mut peer, ErrorCode::Unauthorized).await;
    }
    for mut peer in peers(&server).await {
        peer.send(
            0,
            &ClientFrame::Hello {
                version: PROTOCOL_VERSION + 1,
                token: token.clone(),
            },
        )
        .await;
        expect_error(peer.next_frame(0).await, ErrorCode::UnsupportedVersion);
        expect_closed(&mut peer, ErrorCode::UnsupportedVersion).await;
    }
    // Anything before Hello.
    for mut peer in peers(&server).await {
        peer.send(
            0,
            &ClientFrame::Send {
                client_id: 1,
                body: "sneaky".into(),
            },
        )
        .await;
        expect_error(peer.next_frame(0).await, ErrorCode::ProtocolViolation);
        expect_closed(&mut peer, ErrorCode::ProtocolViolation).await;
    }
    // Garbage where Hello should be: a valid length prefix around bytes that decode to nothing.
    for mut peer in peers(&server).await {
        peer.send_bytes(0, &[3, 0xff, 0xff, 0xff]).await;
        expect_error(peer.next_frame(0).await, ErrorCode::BadFrame);
        expect_closed(&mut peer, ErrorCode::BadFrame).await;
    }
    // A length prefix over the limit on the control stream.
    for mut peer in peers(&server).await {
        let mut prefix = Vec::new();
        write_varint((MAX_FRAME_LEN + 1) as u64, &mut prefix);
        prefix.extend_from_slice(&[0; 64]);
        peer.send_bytes(0, &prefix).await;
        match peer.next_on(0).await {
            Received::Frame(_, frame) => expect_error(frame, ErrorCode::FrameTooLarge),
            // WebSocket may refuse the envelope itself (it is a complete, bounded message).
            Received::Closed(Some(_)) => continue,
            other => panic!("{other:?}"),
        }
        expect_closed(&mut peer, ErrorCode::FrameTooLarge).await;
    }
    // Each refused connection was counted, by code (one per transport).
    let metrics = reqwest::get(format!("{}/metrics", server.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for code in [
        "unauthorized",
        "unsupported_version",
        "protocol_violation",
        "bad_frame",
    ] {
        let line = format!("quibble_connection_errors_total{{code=\"{code}\"}} 2");
        assert!(metrics.contains(&line), "missing {line} in:\n{metrics}");
    }
    still_works(&server, &token, room).await;
}

#[tokio::test]
async fn stream_level_errors_close_that_stream_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let token = api.signup("alice").await;
    let room = api.create_room(&token, "lobby").await;

    for mut peer in peers(&server).await {
        assert!(matches!(
            peer.hello(&token).await,
            ServerFrame::Welcome { .. }
        ));
        peer.join(1, room, None).await;

        // Unknown conversation.
        peer.send(
            2,
            &ClientFrame::Join {
                conversation: ConversationId(999),
                resume: None,
            },
        )
        .await;
        expect_error(peer.next_frame(2).await, ErrorCode::UnknownConversation);
        assert!(matches!(peer.next_on(2).await, Received::Finished(2)));

        // A conversation stream that does not start with Join.
        peer.send(
            3,
            &ClientFrame::History {
                before_seq: 10,
                limit: 5,
            },
        )
        .await;
        expect_error(peer.next_frame(3).await, ErrorCode::ProtocolViolation);
        assert!(matches!(peer.next_on(3).await, Received::Finished(3)));

        // Malformed bytes on a conversation stream.
        peer.send(
            4,
            &ClientFrame::Join {
                conversation: room,
                resume: None,
            },
        )
        .await;
        assert!(matches!(
            peer.next_frame(4).await,
            ServerFrame::Joined { .. }
        ));
        peer.send_bytes(4, &[2, 0xee, 0xee]).await;
        loop {
            match peer.next_frame(4).await {
                ServerFrame::Message(_) => {}
                frame => {
                    expect_error(frame, ErrorCode::BadFrame);
                    break;
                }
            }
        }
        assert!(matches!(peer.next_on(4).await, Received::Finished(4)));

        // Invalid messages are refused one by one; the stream stays open.
        peer.send(
            1,
            &ClientFrame::Send {
                client_id: 1,
                body: "   ".into(),
            },
        )
        .await;
        assert!(matches!(
            peer.next_frame(1).await,
            ServerFrame::Rejected {
                client_id: 1,
                code: ErrorCode::InvalidInput,
                ..
            }
        ));
        peer.send(
            1,
            &ClientFrame::Send {
                client_id: 2,
                body: "x".repeat(MAX_BODY_LEN + 1),
            },
        )
        .await;
        assert!(matches!(
            peer.next_frame(1).await,
            ServerFrame::Rejected {
                client_id: 2,
                code: ErrorCode::InvalidInput,
                ..
            }
        ));
        // A NUL character (no SQL text column holds one).
        peer.send(
            1,
            &ClientFrame::Send {
                client_id: 3,
                body: "nul\0byte".into(),
            },
        )
        .await;
        assert!(matches!(
            peer.next_frame(1).await,
            ServerFrame::Rejected {
                client_id: 3,
                code: ErrorCode::InvalidInput,
                ..
            }
        ));
        // Hello on a conversation stream.
        peer.join(5, room, None).await;
        peer.send(
            5,
            &ClientFrame::Hello {
                version: 1,
                token: token.clone(),
            },
        )
        .await;
        expect_error(peer.next_frame(5).await, ErrorCode::ProtocolViolation);

        // The connection and its first stream are unharmed.
        let seq = peer.say(1, rand_id(), "still fine").await;
        assert!(seq >= 1);
        peer.send(0, &ClientFrame::Ping { nonce: 7 }).await;
        assert_eq!(peer.next_frame(0).await, ServerFrame::Pong { nonce: 7 });
    }
    // Nothing invalid was stored.
    let (_, rooms) = api.call("GET", "/api/rooms", Some(&token), None).await;
    assert_eq!(rooms["rooms"][0]["head_seq"].as_u64(), Some(2));
    still_works(&server, &token, room).await;
}

#[tokio::test]
async fn a_flood_is_refused_with_rate_limited_and_nothing_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "messages_per_second = 5\nmessage_burst = 10\n",
    );
    let api = server.api();
    let token = api.signup("flooder").await;
    let room = api.create_room(&token, "lobby").await;

    for (i, mut peer) in peers(&server).await.into_iter().enumerate() {
        assert!(matches!(
            peer.hello(&token).await,
            ServerFrame::Welcome { .. }
        ));
        peer.join(1, room, None).await;
        let ids: Vec<u64> = (0..100).map(|_| rand_id()).collect();
        for id in &ids {
            peer.send(
                1,
                &ClientFrame::Send {
                    client_id: *id,
                    body: "spam".into(),
                },
            )
            .await;
        }
        let (mut sent, mut refused) = (Vec::new(), Vec::new());
        while sent.len() + refused.len() < ids.len() {
            match peer.next_frame(1).await {
                ServerFrame::Sent { client_id, .. } => sent.push(client_id),
                ServerFrame::Rejected {
                    client_id,
                    code,
                    reason,
                } => {
                    assert_eq!(code, ErrorCode::RateLimited);
                    assert!(reason.contains("retry in"), "{reason}");
                    refused.push(client_id);
                }
                ServerFrame::Message(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut answered: Vec<u64> = sent.iter().chain(&refused).copied().collect();
        answered.sort_unstable();
        assert_eq!(answered, ids, "every send gets exactly one answer");
        if i == 0 {
            assert!(sent.len() >= 10, "the burst passes: {}", sent.len());
        } else {
            assert!(
                sent.len() < 10,
                "the quota is per user, not per connection: {}",
                sent.len()
            );
        }
        assert!(
            refused.len() >= 50,
            "the flood is refused: {}",
            refused.len()
        );
        // The connection is still fine.
        peer.send(0, &ClientFrame::Ping { nonce: 1 }).await;
        assert_eq!(peer.next_frame(0).await, ServerFrame::Pong { nonce: 1 });
    }
}

/// A server that lets a user send 3 messages at once and 10 a second, and that user's peer,
/// joined (stream 1) to a room of theirs.
async fn rate_limited_peer(dir: &tempfile::TempDir) -> (TestServer, RawPeer) {
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "messages_per_second = 10\nmessage_burst = 3\n",
    );
    let api = server.api();
    let token = api.signup("pipeliner").await;
    let room = api.create_room(&token, "lobby").await;
    let mut peer = RawPeer::websocket(&server).await;
    peer.hello(&token).await;
    peer.join(1, room, None).await;
    (server, peer)
}

/// Pipelined sends keep their order across a rate-limit refusal: a send after a refused one is
/// refused too, even once the quota has refilled, until the refused one is resent.
#[tokio::test]
async fn a_send_after_a_rate_limited_one_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut peer) = rate_limited_peer(&dir).await;
    let send = |client_id: u64| ClientFrame::Send {
        client_id,
        body: format!("m{client_id}"),
    };
    for id in 1..=4 {
        peer.send(1, &send(id)).await;
    }
    // 1–3 fit the burst; 4 is refused.
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    while acked.len() + refused.len() < 4 {
        match peer.next_frame(1).await {
            ServerFrame::Sent { client_id, seq, .. } => acked.push((client_id, seq)),
            ServerFrame::Rejected {
                client_id, code, ..
            } => refused.push((client_id, code)),
            ServerFrame::Message(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acked, vec![(1, 1), (2, 2), (3, 3)]);
    assert_eq!(refused, vec![(4, ErrorCode::RateLimited)]);
    // The quota refills (one send per 100 ms), but 5 was sent after 4: it must not overtake it.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    peer.send(1, &send(5)).await;
    let held = loop {
        match peer.next_frame(1).await {
            ServerFrame::Message(_) => {}
            other => break other,
        }
    };
    match held {
        ServerFrame::Rejected {
            client_id: 5,
            code: ErrorCode::RateLimited,
            reason,
        } => assert!(reason.contains("retry in"), "{reason}"),
        other => panic!("5 overtook the refused 4: {other:?}"),
    }
    // 4 comes back and is stored, then 5: in the order they were first sent.
    assert_eq!(peer.say(1, 4, "m4").await, 4);
    assert_eq!(peer.say(1, 5, "m5").await, 5);
}

/// A refused send that comes back ends the hold on the stream's later sends even when the
/// resend is refused for another reason: the client knows its fate, and the sends after it
/// must not wait out the hold.
#[tokio::test]
async fn a_refused_send_refused_again_for_another_reason_releases_the_sends_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut peer) = rate_limited_peer(&dir).await;
    for id in 1..=4 {
        let body = format!("m{id}");
        peer.send(
            1,
            &ClientFrame::Send {
                client_id: id,
                body,
            },
        )
        .await;
    }
    let mut answered = 0;
    while answered < 4 {
        match peer.next_frame(1).await {
            ServerFrame::Sent { .. } => answered += 1,
            ServerFrame::Rejected {
                client_id: 4,
                code: ErrorCode::RateLimited,
                ..
            } => answered += 1,
            ServerFrame::Message(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    // 4 comes back empty: refused as invalid, not as held.
    let empty = ClientFrame::Send {
        client_id: 4,
        body: String::new(),
    };
    peer.send(1, &empty).await;
    match peer.next_frame(1).await {
        ServerFrame::Rejected {
            client_id: 4,
            code: ErrorCode::InvalidInput,
            ..
        } => {}
        other => panic!("expected 4 refused as invalid: {other:?}"),
    }
    // 5 goes through at once instead of waiting out the hold (the hint + 2 s).
    assert_eq!(peer.say(1, 5, "m5").await, 4);
}
