//! Conversation activity against what conversation streams carry (protocol version 4), over
//! both transports against the real server: a connection that got a message live on its own
//! stream of the conversation gets no `ConversationActivity` for it (its client takes the
//! activity from the message); a connection without such a stream, or one speaking an older
//! version, still gets it.

mod support;

use quibble_protocol::{
    ClientFrame, ConversationId, MODERATION_VERSION, PROTOCOL_VERSION, ServerFrame,
};
use support::{RawPeer, TestServer};

/// A connection of `user` speaking `version`, past its conversation list.
async fn connect(server: &TestServer, websocket: bool, token: &str, version: u16) -> RawPeer {
    let mut peer = if websocket {
        RawPeer::websocket(server).await
    } else {
        RawPeer::webtransport(server).await
    };
    let hello = ClientFrame::Hello {
        version,
        token: token.to_owned(),
    };
    peer.send(0, &hello).await;
    let welcome = peer.next_frame(0).await;
    assert!(
        matches!(welcome, ServerFrame::Welcome { .. }),
        "{welcome:?}"
    );
    peer.event_where(|e| matches!(e, ServerFrame::Conversations { done: true, .. }).then_some(()))
        .await;
    peer
}

/// Whether `event` is the activity of `seq` in `room`.
fn activity_of(event: &ServerFrame, room: ConversationId, seq: u64) -> bool {
    matches!(event, ServerFrame::ConversationActivity { conversation, last }
        if *conversation == room && last.seq == seq)
}

#[tokio::test]
async fn activity_goes_only_to_connections_whose_streams_did_not_carry_the_message() {
    for websocket in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path());
        let api = server.api();
        let (ta, tb, tc) = (
            api.signup("alice").await,
            api.signup("bob").await,
            api.signup("carol").await,
        );
        let room = api.create_room(&ta, "lobby").await;
        let mut alice = connect(&server, websocket, &ta, PROTOCOL_VERSION).await;
        alice.join(1, room, None).await;
        // Bob has the room's stream open; Carol has one connection without it and an older
        // one with it.
        let mut bob = connect(&server, websocket, &tb, PROTOCOL_VERSION).await;
        bob.join(1, room, None).await;
        let mut old = connect(&server, websocket, &tc, MODERATION_VERSION).await;
        old.join(1, room, None).await;
        let mut carol = connect(&server, websocket, &tc, PROTOCOL_VERSION).await;

        let seq = alice.say(1, 1, "hello").await;
        for peer in [&mut carol, &mut old] {
            peer.event_where(|e| activity_of(e, room, seq).then_some(()))
                .await;
        }
        assert_eq!(bob.next_message(1).await.seq, seq);
        // The activity is queued before the author's ack, so before anything Alice does next:
        // by the time her typing reaches Bob, an activity would have too.
        alice
            .send(0, &ClientFrame::Typing { conversation: room })
            .await;
        let mut before = Vec::new();
        loop {
            let event = bob.next_event().await;
            if matches!(event, ServerFrame::Typing { typing: true, .. }) {
                break;
            }
            before.push(event);
        }
        assert!(
            !before.iter().any(|e| activity_of(e, room, seq)),
            "websocket {websocket}: the stream carried the message, yet {before:?}"
        );
    }
}
