//! Durability and shutdown against a real server process: a restart on the same data dir keeps
//! accounts, rooms and history; SIGTERM says GoAway to connected clients and exits cleanly.

mod support;

use quibble_protocol::{Cursor, ErrorCode, ServerFrame};
use support::{RawPeer, Received, TestServer};

#[tokio::test]
async fn restart_keeps_accounts_rooms_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    let token = api.signup("alice").await;
    let room = api.create_room(&token, "lobby").await;
    let mut peer = RawPeer::webtransport(&server).await;
    let ServerFrame::Welcome { epoch, .. } = peer.hello(&token).await else {
        panic!("no welcome")
    };
    peer.join(1, room, None).await;
    for i in 1..=5u64 {
        peer.say(1, i, &format!("durable {i}")).await;
    }
    assert!(server.stop().success(), "clean exit on SIGTERM");

    let server = TestServer::start(&data);
    let api = server.api();
    // The old token still works and the password still logs in.
    let (status, me) = api.call("GET", "/api/account", Some(&token), None).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("alice")));
    api.login("alice").await;
    let (_, rooms) = api.call("GET", "/api/rooms", Some(&token), None).await;
    assert_eq!(rooms["rooms"][0]["name"], "lobby");
    assert_eq!(rooms["rooms"][0]["head_seq"].as_u64(), Some(5));

    let mut peer = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome { epoch: after, .. } = peer.hello(&token).await else {
        panic!("no welcome")
    };
    assert_eq!(after, epoch, "same store, same epoch: cursors stay valid");
    let (_, history) = peer.join(1, room, Some(Cursor { epoch, seq: 2 })).await;
    assert_eq!(
        history.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["durable 3", "durable 4", "durable 5"]
    );
    // Seqs continue where they left off, and client-id dedupe survived the restart.
    assert_eq!(peer.say(1, 5, "durable 5").await, 5);
    assert_eq!(peer.say(1, 6, "after restart").await, 6);
}

#[tokio::test]
async fn sigterm_sends_go_away_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    let token = api.signup("alice").await;
    let room = api.create_room(&token, "lobby").await;
    let mut wt = RawPeer::webtransport(&server).await;
    wt.hello(&token).await;
    wt.join(1, room, None).await;
    let mut ws = RawPeer::websocket(&server).await;
    ws.hello(&token).await;
    ws.join(1, room, None).await;
    let acked = wt.say(1, 1, "acknowledged before shutdown").await;

    let stopper = std::thread::spawn(move || server.stop());
    for peer in [&mut wt, &mut ws] {
        loop {
            match peer.next_on(0).await {
                Received::Frame(
                    0,
                    ServerFrame::GoAway {
                        reconnect_after_ms, ..
                    },
                ) => {
                    assert!((500..5_000).contains(&reconnect_after_ms));
                    break;
                }
                Received::Frame(..) => {}
                other => panic!("expected GoAway, got {other:?}"),
            }
        }
        match peer.next_on(u64::MAX).await {
            Received::Closed(code) => {
                assert_eq!(code, Some(close_code(peer, ErrorCode::ShuttingDown)))
            }
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
    assert!(stopper.join().unwrap().success());

    let server = TestServer::start(&data);
    let rooms = server
        .api()
        .call("GET", "/api/rooms", Some(&token), None)
        .await
        .1;
    assert_eq!(rooms["rooms"][0]["head_seq"].as_u64(), Some(acked));
}

fn close_code(peer: &RawPeer, code: ErrorCode) -> u32 {
    if peer.is_websocket() {
        u32::from(code.ws_close_code())
    } else {
        code.as_u32()
    }
}
