//! Message deletion against a real server process: the author or an admin deletes over REST;
//! joined streams on both transports get `Deleted` live (a version-2 connection gets nothing and
//! keeps working); later joins, history pages and the conversation list carry the tombstone;
//! a resume from after the deletion learns of it; the body's bytes leave the redb file; a user
//! deleting someone else's message is refused and changes nothing; deleting twice is harmless;
//! users (not admins) have a deletion quota.

mod support;

use std::path::Path;

use quibble_protocol::{ChatMessage, ClientFrame, ConversationId, Cursor, ServerFrame};
use serde_json::Value;
use support::{Api, RawPeer, TestServer};

async fn delete(api: &Api, token: &str, room: ConversationId, seq: u64) -> (u16, Value) {
    api.call(
        "DELETE",
        &format!("/api/conversations/{}/messages/{seq}", room.0),
        Some(token),
        None,
    )
    .await
}

/// Whether `needle` occurs in the file at `path`.
fn file_holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).expect("read the store file");
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

async fn expect_deleted(peer: &mut RawPeer, stream: u64, room: ConversationId, seq: u64) {
    match peer.next_frame(stream).await {
        ServerFrame::Deleted {
            conversation,
            seq: s,
        } => assert_eq!((conversation, s), (room, seq)),
        other => panic!("expected Deleted for {seq}, got {other:?}"),
    }
}

async fn history(peer: &mut RawPeer, stream: u64, before_seq: u64) -> Vec<ChatMessage> {
    peer.send(
        stream,
        &ClientFrame::History {
            before_seq,
            limit: 50,
        },
    )
    .await;
    match peer.next_frame(stream).await {
        ServerFrame::HistoryPage { messages, .. } => messages,
        other => panic!("expected a history page, got {other:?}"),
    }
}

#[tokio::test]
async fn deletion_reaches_joined_streams_and_every_later_read_shows_the_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let admin = api.signup("alice").await;
    support::promote(&server, "alice");
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    let room = api.create_room(&bob, "lobby").await;

    let mut bob_wt = RawPeer::webtransport(&server).await;
    bob_wt.hello(&bob).await;
    bob_wt.join(1, room, None).await;
    let mut carol_ws = RawPeer::websocket(&server).await;
    carol_ws.hello(&carol).await;
    carol_ws.join(1, room, None).await;
    let mut old = RawPeer::websocket(&server).await;
    old.send(
        0,
        &ClientFrame::Hello {
            version: 2,
            token: carol.clone(),
        },
    )
    .await;
    assert!(matches!(
        old.next_frame(0).await,
        ServerFrame::Welcome { version: 2, .. }
    ));
    old.join(1, room, None).await;

    assert_eq!(bob_wt.say(1, 1, "bob's first words").await, 1);
    assert_eq!(bob_wt.say(1, 2, "bob's second words").await, 2);
    for peer in [&mut carol_ws, &mut old] {
        assert_eq!(peer.next_message(1).await.seq, 1);
        assert_eq!(peer.next_message(1).await.seq, 2);
    }

    // A user may not delete someone else's message, and nothing changes.
    let (status, body) = delete(&api, &carol, room, 1).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        history(&mut carol_ws, 1, 3).await[0].body,
        "bob's first words"
    );
    // No such message or conversation.
    assert_eq!(delete(&api, &bob, room, 99).await.0, 404);
    assert_eq!(delete(&api, &bob, ConversationId(999), 1).await.0, 404);
    assert_eq!(delete(&api, "nobody", room, 1).await.0, 401);

    // The author deletes it: every joined stream speaking version 3 hears it live.
    let (status, body) = delete(&api, &bob, room, 1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"conversation": room.0, "seq": 1, "deleted": true})
    );
    expect_deleted(&mut bob_wt, 1, room, 1).await;
    expect_deleted(&mut carol_ws, 1, room, 1).await;
    // Deleting twice is harmless: same answer, no second event.
    assert_eq!(delete(&api, &bob, room, 1).await.0, 200);
    assert_eq!(bob_wt.say(1, 3, "bob goes on").await, 3);
    assert_eq!(carol_ws.next_message(1).await.seq, 3);
    // The version-2 connection gets no Deleted frame and keeps working.
    assert_eq!(old.next_message(1).await.seq, 3);
    assert_eq!(history(&mut old, 1, 2).await[0].body, "");

    // A history page and a later join carry the tombstone, never the text.
    let page = history(&mut carol_ws, 1, 4).await;
    assert!(page[0].is_deleted(), "{page:?}");
    assert_eq!((page[0].seq, page[0].author_name.as_str()), (1, "bob"));
    assert_eq!(page[1].body, "bob's second words");
    let mut later = RawPeer::webtransport(&server).await;
    later.hello(&carol).await;
    let (_, replay) = later.join(1, room, None).await;
    assert!(
        replay[0].is_deleted() && replay[0].client_id == 0,
        "{replay:?}"
    );
    assert_eq!(replay.len(), 3);

    // An admin deletes anyone's message; being the last, it leaves the list previews too.
    assert_eq!(carol_ws.say(1, 1, "carol's last words").await, 4);
    assert_eq!(delete(&api, &admin, room, 4).await.0, 200);
    // That is a moderation action: in the audit log, once (the author's own deletions are not).
    let (status, audit) = api
        .call("GET", "/api/admin/audit", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{audit}");
    let deletions: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "delete_message")
        .collect();
    assert_eq!(deletions.len(), 1, "{audit}");
    assert_eq!(deletions[0]["target"], format!("{}/4", room.0));
    assert_eq!(deletions[0]["actor"], "alice");
    for peer in [&mut bob_wt, &mut carol_ws] {
        let mut seq = peer.next_message(1).await.seq;
        while seq < 4 {
            seq = peer.next_message(1).await.seq;
        }
        expect_deleted(peer, 1, room, 4).await;
    }
    let preview = bob_wt
        .event_where(|frame| match frame {
            ServerFrame::ConversationUpdated(summary)
                if summary.conversation == room
                    && summary.last.as_ref().is_some_and(|l| l.seq == 4) =>
            {
                summary.last.as_ref().map(|l| l.preview.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(preview, "");
    let (_, list) = api
        .call("GET", "/api/conversations", Some(&bob), None)
        .await;
    assert_eq!(list["conversations"][0]["last"]["preview"], "");
}

#[tokio::test]
async fn a_resume_learns_of_the_deletion_and_the_body_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = data.join("quibble.redb");
    let server = TestServer::start(&data);
    let api = server.api();
    let token = api.signup("alice").await;
    let room = api.create_room(&token, "lobby").await;
    let secret = "the-distinctive-body-7f3a9c-that-must-vanish";

    let mut peer = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome { epoch, .. } = peer.hello(&token).await else {
        panic!("expected Welcome");
    };
    peer.join(1, room, None).await;
    assert_eq!(peer.say(1, 1, secret).await, 1);
    // Later messages land in the same leaf: each commit leaves a stale copy of it behind.
    for i in 2..=20 {
        assert_eq!(peer.say(1, i, &format!("filler message {i}")).await, i);
    }
    peer.close().await;
    assert!(file_holds(&file, secret), "the body is in the file before");

    assert_eq!(delete(&api, &token, room, 1).await.0, 200);
    assert!(!file_holds(&file, secret), "the body is gone once deleted");
    let metrics = reqwest::get(format!("{}/metrics", server.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("quibble_store_scrubs_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    // A client that has everything up to 20 resumes: nothing to replay, then the deletion.
    let mut back = RawPeer::webtransport(&server).await;
    back.hello(&token).await;
    let (joined, replayed) = back.join(1, room, Some(Cursor { epoch, seq: 20 })).await;
    assert!(matches!(joined, ServerFrame::Joined { from_seq: 20, .. }));
    assert!(replayed.is_empty());
    expect_deleted(&mut back, 1, room, 1).await;
    back.close().await;

    assert!(server.stop().success());
    assert!(!file_holds(&file, secret), "and after the server stopped");
}

#[tokio::test]
async fn deletions_are_rate_limited_per_user_but_not_for_admins() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "delete_burst = 1\ndeletes_per_hour = 1\n",
    );
    let api = server.api();
    let admin = api.signup("alice").await;
    support::promote(&server, "alice");
    let bob = api.signup("bob").await;
    let room = api.create_room(&bob, "lobby").await;
    let mut peer = RawPeer::websocket(&server).await;
    peer.hello(&bob).await;
    peer.join(1, room, None).await;
    for i in 1..=4 {
        peer.say(1, i, &format!("message {i}")).await;
    }
    assert_eq!(delete(&api, &bob, room, 1).await.0, 200);
    expect_deleted(&mut peer, 1, room, 1).await;
    assert_eq!(
        delete(&api, &bob, room, 1).await.0,
        200,
        "a repeat costs nothing"
    );
    let (status, body) = delete(&api, &bob, room, 2).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert_eq!(
        history(&mut peer, 1, 3).await[1].body,
        "message 2",
        "and nothing changed"
    );
    assert_eq!(delete(&api, &admin, room, 3).await.0, 200);
    assert_eq!(delete(&api, &admin, room, 4).await.0, 200);
}
