//! Per-room retention against a real server process (sweep every 50 ms from its config file):
//! who may set it (the room's creator or an admin; anyone else 403, no such room 404), bad
//! values refused with 400, the setting shown by GET and in the room list and audited; then the
//! sweep turns the oldest messages into tombstones that joined streams on both transports get
//! live as deletions, and that history pages and later joins carry, with seqs contiguous.

mod support;

use quibble_protocol::{ChatMessage, ClientFrame, ConversationId, ServerFrame};
use serde_json::{Value, json};
use support::{Api, RawPeer, TestServer};

async fn put(api: &Api, token: &str, room: ConversationId, body: Value) -> (u16, Value) {
    api.call(
        "PUT",
        &format!("/api/rooms/{}/retention", room.0),
        Some(token),
        Some(body),
    )
    .await
}

async fn get(api: &Api, token: &str, room: ConversationId) -> (u16, Value) {
    api.call(
        "GET",
        &format!("/api/rooms/{}/retention", room.0),
        Some(token),
        None,
    )
    .await
}

fn error_code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"]["code"].as_str())
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
async fn only_the_creator_or_an_admin_sets_retention_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let admin = api.signup("alice").await;
    support::promote(&server, "alice");
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    let room = api.create_room(&bob, "lobby").await;
    let dm = api.befriend(&bob, &carol, "bob", "carol").await;
    let off = json!({"room": room.0, "max_age_seconds": null, "max_messages": null});
    assert_eq!(get(&api, &carol, room).await, (200, off.clone()));

    // Anyone else: 403, and nothing changes.
    let keep_5 = json!({"max_messages": 5});
    assert_eq!(
        error_code(&put(&api, &carol, room, keep_5.clone()).await),
        (403, Some("forbidden"))
    );
    assert_eq!(get(&api, &carol, room).await, (200, off.clone()));
    // No such room, and a DM (even for its members or an admin): 404.
    for (who, target) in [
        (&bob, ConversationId(9999)),
        (&bob, dm),
        (&carol, dm),
        (&admin, dm),
    ] {
        assert_eq!(
            error_code(&put(&api, who, target, keep_5.clone()).await),
            (404, Some("not_found"))
        );
    }
    assert_eq!(
        error_code(&get(&api, &bob, dm).await),
        (404, Some("not_found"))
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/rooms/{}/retention", room.0),
            None,
            None
        )
        .await
        .0,
        401
    );

    // Bad values: 400 with a clear error, and nothing changes.
    for (body, code) in [
        (json!({"max_messages": 0}), "invalid_retention"),
        (json!({"max_age_seconds": 0}), "invalid_retention"),
        (
            json!({"max_age_seconds": 4_000_000_000u64}),
            "invalid_retention",
        ),
        (
            json!({"max_messages": 2_000_000_000u64}),
            "invalid_retention",
        ),
        (json!({"max_messages": -1}), "bad_request"),
        (json!({"max_messages": "ten"}), "bad_request"),
        (json!({"keep": 10}), "bad_request"),
    ] {
        let answer = put(&api, &bob, room, body.clone()).await;
        assert_eq!(error_code(&answer), (400, Some(code)), "{body}: {answer:?}");
        assert!(
            answer.1["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(get(&api, &carol, room).await, (200, off.clone()));

    // The creator may; so may an admin, in someone else's room.
    let week = json!({"room": room.0, "max_age_seconds": 604_800, "max_messages": null});
    assert_eq!(
        put(&api, &bob, room, json!({"max_age_seconds": 604_800})).await,
        (200, week.clone())
    );
    assert_eq!(get(&api, &carol, room).await, (200, week));
    let both = json!({"room": room.0, "max_age_seconds": 3600, "max_messages": 100});
    assert_eq!(
        put(
            &api,
            &admin,
            room,
            json!({"max_age_seconds": 3600, "max_messages": 100})
        )
        .await,
        (200, both)
    );
    let (_, list) = api.call("GET", "/api/rooms", Some(&carol), None).await;
    assert_eq!(
        list["rooms"][0]["retention"],
        json!({"max_age_seconds": 3600, "max_messages": 100})
    );
    // Off again (an empty body turns both rules off).
    assert_eq!(put(&api, &bob, room, json!({})).await, (200, off));

    // Each change is in the audit log, with who made it.
    let (status, audit) = api
        .call("GET", "/api/admin/audit", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{audit}");
    let changes: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "set_retention")
        .map(|entry| {
            assert_eq!(entry["target"], room.0.to_string());
            (
                entry["actor"].as_str().unwrap(),
                entry["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("bob", "max_age_ms=off, max_messages=off"),
            ("alice", "max_age_ms=3600000, max_messages=100"),
            ("bob", "max_age_ms=604800000, max_messages=off"),
        ]
    );
}

#[tokio::test]
async fn the_sweep_retains_the_oldest_away_live_and_in_history_with_seqs_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with_config(&dir.path().join("data"), "retention_sweep_ms = 50\n");
    let api = server.api();
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    let room = api.create_room(&bob, "lobby").await;
    let other = api.create_room(&bob, "other").await;

    let mut bob_wt = RawPeer::webtransport(&server).await;
    bob_wt.hello(&bob).await;
    bob_wt.join(1, room, None).await;
    bob_wt.join(3, other, None).await;
    let mut carol_ws = RawPeer::websocket(&server).await;
    carol_ws.hello(&carol).await;
    carol_ws.join(1, room, None).await;
    for i in 1..=6 {
        assert_eq!(bob_wt.say(1, i, &format!("message {i}")).await, i);
        assert_eq!(carol_ws.next_message(1).await.seq, i);
    }
    assert_eq!(bob_wt.say(3, 1, "elsewhere").await, 1);

    assert_eq!(
        put(&api, &bob, room, json!({"max_messages": 2})).await.0,
        200
    );
    // Within the streams' deadline, both transports hear 1..=4 deleted, in order.
    for peer in [&mut bob_wt, &mut carol_ws] {
        for seq in 1..=4 {
            expect_deleted(peer, 1, room, seq).await;
        }
    }
    let page = history(&mut carol_ws, 1, 7).await;
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6],
        "seqs stay contiguous"
    );
    assert!(page[..4].iter().all(ChatMessage::is_deleted), "{page:?}");
    assert!(page[..4].iter().all(|m| m.author_name == "bob"));
    assert_eq!(page[4].body, "message 5");
    assert_eq!(page[5].body, "message 6");

    // New messages push the oldest kept one out, and a later join replays the tombstones.
    assert_eq!(bob_wt.say(1, 7, "message 7").await, 7);
    assert_eq!(carol_ws.next_message(1).await.seq, 7);
    expect_deleted(&mut carol_ws, 1, room, 5).await;
    let mut later = RawPeer::webtransport(&server).await;
    later.hello(&carol).await;
    let (_, replay) = later.join(1, room, None).await;
    let deleted: Vec<u64> = replay
        .iter()
        .filter(|m| m.is_deleted())
        .map(|m| m.seq)
        .collect();
    assert_eq!(deleted, [1, 2, 3, 4, 5], "{replay:?}");
    assert_eq!(
        replay.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );

    // A room without retention keeps everything.
    let kept = history(&mut bob_wt, 3, 2).await;
    assert_eq!(kept[0].body, "elsewhere");

    // Counted once the sweep hears back (after the store's scrub): poll, within a deadline.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let metrics = reqwest::get(format!("{}/metrics", server.http()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("quibble_messages_retained_away_total 5") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retention_by_age_empties_a_quiet_room_and_its_preview() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with_config(&dir.path().join("data"), "retention_sweep_ms = 50\n");
    let api = server.api();
    let bob = api.signup("bob").await;
    let room = api.create_room(&bob, "lobby").await;
    let mut bob_ws = RawPeer::websocket(&server).await;
    bob_ws.hello(&bob).await;
    bob_ws.join(1, room, None).await;
    assert_eq!(bob_ws.say(1, 1, "old news").await, 1);
    assert_eq!(bob_ws.say(1, 2, "older news").await, 2);
    let started = std::time::Instant::now();
    assert_eq!(
        put(&api, &bob, room, json!({"max_age_seconds": 1})).await.0,
        200
    );
    // Once they are a second old (within the stream's deadline), both go, the last included.
    expect_deleted(&mut bob_ws, 1, room, 1).await;
    expect_deleted(&mut bob_ws, 1, room, 2).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    // The conversation list's preview drops the last message's text, live and over REST.
    let preview = bob_ws
        .event_where(|frame| match frame {
            ServerFrame::ConversationUpdated(summary)
                if summary.conversation == room
                    && summary.last.as_ref().is_some_and(|l| l.seq == 2) =>
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
    // New messages are kept until they are old too.
    assert_eq!(bob_ws.say(1, 3, "fresh").await, 3);
    assert_eq!(history(&mut bob_ws, 1, 4).await[2].body, "fresh");
}

#[tokio::test]
async fn quibble_admin_sets_retention_through_the_server_and_on_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    let bob = api.signup("bob").await;
    let room = api.create_room(&bob, "lobby").await;
    let id = room.0.to_string();

    let run = server.admin(&["retention", &id, "--max-messages", "3"]);
    assert!(run.ok, "{run:?}");
    assert_eq!(run.stdout, format!("retention\t{id}\t-\t3\n"));
    assert_eq!(
        get(&api, &bob, room).await.1,
        json!({"room": room.0, "max_age_seconds": null, "max_messages": 3})
    );
    // Refusals say why and change nothing.
    let run = server.admin(&["retention", &id, "--max-messages", "0"]);
    assert!(!run.ok && run.stderr.contains("max_messages"), "{run:?}");
    let run = server.admin(&["retention", "9999", "--max-messages", "3"]);
    assert!(!run.ok && run.stderr.contains("no room 9999"), "{run:?}");
    assert_eq!(get(&api, &bob, room).await.1["max_messages"], 3);
    let audit = server.admin(&["audit"]);
    assert!(
        audit
            .stdout
            .contains(&format!("operator\tset_retention\t{id}\t")),
        "{audit:?}"
    );

    // With the server stopped, on its store file.
    assert!(server.stop().success());
    let run = support::quibble_admin(&data, &["retention", &id, "--max-age", "1d"]);
    assert!(run.ok, "{run:?}");
    assert_eq!(run.stdout, format!("retention\t{id}\t86400\t-\n"));
    let run = support::quibble_admin(&data, &["retention", &id]);
    assert_eq!(run.stdout, format!("retention\t{id}\t-\t-\n"), "{run:?}");
}
