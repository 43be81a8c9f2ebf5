//! Connection setup in one flight (issue 9): over WebSocket a client may send `Join` right
//! behind `Hello`, and both right behind the upgrade request, without waiting for `Welcome`.
//! The server authenticates `Hello` before it serves any other stream: a good token gets
//! `Welcome`, then `Joined` and the room's replay; a bad one gets the auth error and nothing of
//! the room. (Over WebTransport each stream is its own QUIC stream, and the server may accept a
//! conversation's stream before the control stream, so clients open nothing else before
//! `Welcome` there.)

mod support;

use quibble_protocol::{ClientFrame, ConversationId, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use support::{RawPeer, Received, TestServer};

fn flight(token: &str, room: ConversationId) -> Vec<(u64, ClientFrame)> {
    vec![
        (
            0,
            ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                token: token.to_owned(),
            },
        ),
        (
            1,
            ClientFrame::Join {
                conversation: room,
                resume: None,
            },
        ),
    ]
}

/// A server with alice's room holding one message; alice's token and the room.
async fn room_with_a_message(server: &TestServer) -> (String, ConversationId) {
    let api = server.api();
    let alice = api.signup("alice").await;
    let room = api.create_room(&alice, "lobby").await;
    let mut peer = RawPeer::websocket(server).await;
    assert!(matches!(
        peer.hello(&alice).await,
        ServerFrame::Welcome { .. }
    ));
    peer.join(1, room, None).await;
    peer.say(1, 1, "for members").await;
    peer.close().await;
    (alice, room)
}

fn position(got: &[Received], pick: impl Fn(&Received) -> bool) -> Option<usize> {
    got.iter().position(pick)
}

/// `Welcome` on the control stream, then `Joined` and the replayed message on stream 1.
fn assert_welcomed_then_joined(got: &[Received]) {
    let welcome = position(got, |r| {
        matches!(r, Received::Frame(0, ServerFrame::Welcome { .. }))
    })
    .unwrap_or_else(|| panic!("no Welcome in {got:?}"));
    let joined = position(got, |r| {
        matches!(
            r,
            Received::Frame(1, ServerFrame::Joined { head_seq: 1, .. })
        )
    })
    .unwrap_or_else(|| panic!("no Joined in {got:?}"));
    let message = position(
        got,
        |r| matches!(r, Received::Frame(1, ServerFrame::Message(m)) if m.body == "for members"),
    )
    .unwrap_or_else(|| panic!("no replayed message in {got:?}"));
    assert!(joined < message, "Joined before the replay: {got:?}");
    assert!(welcome < joined, "Welcome before Joined: {got:?}");
}

#[tokio::test]
async fn hello_and_join_in_one_flight_are_welcomed_then_joined() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let (alice, room) = room_with_a_message(&server).await;
    let replayed = |r: &Received| matches!(r, Received::Frame(1, ServerFrame::Message(_)));

    // The upgrade request, Hello and Join in one TCP write, before the server's 101.
    let mut ws = RawPeer::websocket_pipelined(&server, &flight(&alice, room)).await;
    let got = ws.collect_until(replayed).await;
    assert_welcomed_then_joined(&got);

    // Hello and Join in one WebSocket flush after the upgrade.
    let mut ws = RawPeer::websocket(&server).await;
    ws.send_flight(&flight(&alice, room)).await;
    let got = ws.collect_until(replayed).await;
    assert_welcomed_then_joined(&got);
}

#[tokio::test]
async fn a_bad_token_with_a_pipelined_join_gets_the_auth_error_and_nothing_of_the_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let (_, room) = room_with_a_message(&server).await;
    let bad = "not-a-token";

    let peers = [
        RawPeer::websocket_pipelined(&server, &flight(bad, room)).await,
        {
            let mut ws = RawPeer::websocket(&server).await;
            ws.send_flight(&flight(bad, room)).await;
            ws
        },
    ];
    for mut peer in peers {
        let got = peer.collect_until(|_| false).await;
        assert!(
            got.iter().any(|r| matches!(
                r,
                Received::Frame(
                    0,
                    ServerFrame::Error {
                        code: ErrorCode::Unauthorized,
                        ..
                    }
                )
            )),
            "no Unauthorized in {got:?}"
        );
        assert!(
            matches!(got.last(), Some(Received::Closed(_))),
            "the connection is closed: {got:?}"
        );
        assert!(
            !got.iter().any(|r| matches!(r, Received::Frame(1, _))),
            "nothing of the room: {got:?}"
        );
        assert!(
            !got.iter()
                .any(|r| matches!(r, Received::Frame(_, ServerFrame::Welcome { .. }))),
            "no Welcome: {got:?}"
        );
    }
}
