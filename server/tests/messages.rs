//! Message rules over the realtime protocol of a real server process: client ids are
//! de-duplicated per conversation, and a body that shows nothing is refused as empty.

mod support;

use quibble_protocol::{ClientFrame, ErrorCode, ServerFrame};
use support::{RawPeer, TestServer};

#[tokio::test]
async fn one_client_id_in_two_rooms_is_two_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let token = api.signup("alice").await;
    let a = api.create_room(&token, "a").await;
    let b = api.create_room(&token, "b").await;

    let mut peer = RawPeer::websocket(&server).await;
    peer.hello(&token).await;
    peer.join(1, a, None).await;
    peer.join(2, b, None).await;
    assert_eq!(peer.say(1, 6, "first in a").await, 1);
    assert_eq!(peer.say(1, 7, "second in a").await, 2);
    // The same client id in room b is a new message there, not room a's seq.
    assert_eq!(peer.say(2, 7, "first in b").await, 1);
    // A resend in b is still recognised as b's.
    assert_eq!(peer.say(2, 7, "first in b").await, 1);
    peer.close().await;

    let mut reader = RawPeer::webtransport(&server).await;
    reader.hello(&token).await;
    let (_, in_b) = reader.join(1, b, None).await;
    let bodies: Vec<&str> = in_b.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["first in b"]);
}

#[tokio::test]
async fn a_body_of_invisible_characters_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let token = api.signup("alice").await;
    let room = api.create_room(&token, "lobby").await;
    let mut peer = RawPeer::websocket(&server).await;
    peer.hello(&token).await;
    peer.join(1, room, None).await;

    for (client_id, body) in [
        (1, "\u{200b}"),
        (2, " \u{2060}\u{feff}\u{200d} "),
        (3, "\u{3164}"),
    ] {
        peer.send(
            1,
            &ClientFrame::Send {
                client_id,
                body: body.to_owned(),
            },
        )
        .await;
        match peer.next_frame(1).await {
            ServerFrame::Rejected {
                client_id: id,
                code,
                reason,
            } => {
                assert_eq!((id, code), (client_id, ErrorCode::InvalidInput));
                assert!(reason.contains("empty"), "{reason}");
            }
            other => panic!("expected Rejected for {body:?}, got {other:?}"),
        }
    }
    // Text with a visible character goes through, and nothing before it was stored.
    assert_eq!(peer.say(1, 4, "\u{2764}\u{fe0f}").await, 1);
}
