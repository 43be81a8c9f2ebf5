//! Friends, DMs, membership, the conversation list, receipts, presence and typing, against the
//! real server over both transports: the REST flow with live events on both sides, who may open
//! and send in a DM, offline delivery from the summary's cursors, receipts that survive a
//! restart, presence after a silent client, typing that runs out.

mod support;

use std::time::{Duration, Instant};

use quibble_protocol::{
    ClientFrame, ConversationId, ConversationKind, ConversationSummary, Cursor, ErrorCode,
    FriendStatus, ServerFrame, UserId,
};
use serde_json::{Value, json};
use support::{Api, RawPeer, TestServer};

#[derive(Clone, Copy, Debug)]
enum Transport {
    WebTransport,
    WebSocket,
}

const BOTH: [Transport; 2] = [Transport::WebTransport, Transport::WebSocket];

/// A peer signed in as `token`, with its conversation snapshot read.
async fn connect(
    server: &TestServer,
    transport: Transport,
    token: &str,
) -> (RawPeer, u64, Vec<ConversationSummary>) {
    let mut peer = match transport {
        Transport::WebTransport => RawPeer::webtransport(server).await,
        Transport::WebSocket => RawPeer::websocket(server).await,
    };
    let ServerFrame::Welcome { epoch, .. } = peer.hello(token).await else {
        panic!("expected Welcome");
    };
    let mut list = Vec::new();
    loop {
        match peer.next_event().await {
            ServerFrame::Conversations {
                conversations,
                done,
            } => {
                list.extend(conversations);
                if done {
                    break;
                }
            }
            other => panic!("expected the conversation snapshot first, got {other:?}"),
        }
    }
    (peer, epoch, list)
}

async fn post(api: &Api, token: &str, path: &str, body: Value) -> (u16, Value) {
    api.call("POST", path, Some(token), Some(body)).await
}

/// The next `Friend` event about `user`.
async fn friend_event(peer: &mut RawPeer, user: UserId) -> (FriendStatus, Option<ConversationId>) {
    peer.event_where(|f| match f {
        ServerFrame::Friend {
            user: u,
            status,
            dm,
            ..
        } if *u == user => Some((*status, *dm)),
        _ => None,
    })
    .await
}

async fn user_id(api: &Api, token: &str) -> UserId {
    let (_, body) = api.call("GET", "/api/account", Some(token), None).await;
    UserId(body["id"].as_u64().expect("id"))
}

async fn conversations(api: &Api, token: &str) -> Vec<Value> {
    let (status, body) = api
        .call("GET", "/api/conversations", Some(token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["conversations"].as_array().expect("list").clone()
}

fn entry(list: &[Value], id: ConversationId) -> Value {
    list.iter()
        .find(|c| c["id"].as_u64() == Some(id.0))
        .unwrap_or_else(|| panic!("conversation {} not in {list:?}", id.0))
        .clone()
}

/// Sends `frame` on a new conversation stream and returns the error it is refused with.
async fn refused_join(peer: &mut RawPeer, stream: u64, conversation: ConversationId) -> ErrorCode {
    peer.send(
        stream,
        &ClientFrame::Join {
            conversation,
            resume: None,
        },
    )
    .await;
    match peer.next_frame(stream).await {
        ServerFrame::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// No message arrives on `stream` for a short while.
async fn quiet(peer: &mut RawPeer, stream: u64) {
    let got = tokio::time::timeout(Duration::from_millis(300), peer.next_on(stream)).await;
    assert!(got.is_err(), "expected nothing more, got {got:?}");
}

#[tokio::test]
async fn friend_requests_over_rest_are_heard_live_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let (alice_id, bob_id) = (user_id(&api, &ta).await, user_id(&api, &tb).await);
    let (mut alice, _, list) = connect(&server, Transport::WebTransport, &ta).await;
    assert!(list.is_empty());
    let (mut bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;

    // Errors first: they change nothing.
    let (status, body) = post(&api, &ta, "/api/users/add", json!({"username": "nobody"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_user"))
    );
    let (status, body) = post(&api, &ta, "/api/users/add", json!({"username": "ALICE"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("cannot_befriend_self"))
    );
    let (status, _) = post(&api, &ta, "/api/users/add", json!({"name": "bob"})).await;
    assert_eq!(status, 400);

    let (status, body) = post(&api, &ta, "/api/users/add", json!({"username": "bob"})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("requested")));
    assert_eq!(
        friend_event(&mut alice, bob_id).await,
        (FriendStatus::Outgoing, None)
    );
    assert_eq!(
        friend_event(&mut bob, alice_id).await,
        (FriendStatus::Incoming, None)
    );
    let (_, friends) = api.call("GET", "/api/friends", Some(&tb), None).await;
    assert_eq!(friends["incoming"][0]["username"], "alice");
    assert_eq!(friends["friends"].as_array().unwrap().len(), 0);
    let (_, friends) = api.call("GET", "/api/friends", Some(&ta), None).await;
    assert_eq!(friends["outgoing"][0]["username"], "bob");

    let (status, body) = post(&api, &tb, "/api/users/add", json!({"username": "alice"})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    let dm = ConversationId(body["user"]["dm"].as_u64().unwrap());
    for (peer, other) in [(&mut alice, bob_id), (&mut bob, alice_id)] {
        assert_eq!(
            friend_event(peer, other).await,
            (FriendStatus::Friends, Some(dm))
        );
        let summary = peer
            .event_where(|f| match f {
                ServerFrame::ConversationUpdated(s) if s.conversation == dm => Some(s.clone()),
                _ => None,
            })
            .await;
        assert_eq!(summary.kind, ConversationKind::Dm { peer: other });
        let online = peer
            .event_where(|f| match f {
                ServerFrame::Presence { user, online, .. } if *user == other => Some(*online),
                _ => None,
            })
            .await;
        assert!(online, "a new friend's presence comes at once");
    }
    let (_, friends) = api.call("GET", "/api/friends", Some(&ta), None).await;
    assert_eq!(friends["friends"][0]["dm"], json!(dm.0));
    let (status, body) = post(&api, &ta, "/api/users/dm", json!({"username": "bob"})).await;
    assert_eq!(
        (status, &body["conversation"], &body["can_send"]),
        (200, &json!(dm.0), &json!(true))
    );

    let (status, body) = post(&api, &ta, "/api/users/remove", json!({"username": "bob"})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("unfriended")));
    assert_eq!(
        friend_event(&mut alice, bob_id).await,
        (FriendStatus::None, Some(dm))
    );
    assert_eq!(
        friend_event(&mut bob, alice_id).await,
        (FriendStatus::None, Some(dm))
    );
    let (_, body) = post(&api, &ta, "/api/users/remove", json!({"username": "bob"})).await;
    assert_eq!(body["status"], "nothing");
}

#[tokio::test]
async fn rooms_are_joined_and_left_durably_and_the_list_marks_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let lobby = api.create_room(&ta, "lobby").await;
    let (_, rooms) = api.call("GET", "/api/rooms", Some(&ta), None).await;
    assert_eq!(
        rooms["rooms"][0]["member"], true,
        "creating a room joins it"
    );
    let (_, rooms) = api.call("GET", "/api/rooms", Some(&tb), None).await;
    assert_eq!(rooms["rooms"][0]["member"], false);

    let (mut bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;
    let path = format!("/api/rooms/{}/join", lobby.0);
    let (status, body) = post(&api, &tb, &path, json!({})).await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)));
    let summary = bob
        .event_where(|f| match f {
            ServerFrame::ConversationUpdated(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (summary.conversation, summary.title.as_str()),
        (lobby, "lobby")
    );
    let (_, body) = post(&api, &tb, &path, json!({})).await;
    assert_eq!(body["changed"], false);
    let (_, rooms) = api.call("GET", "/api/rooms", Some(&tb), None).await;
    assert_eq!(rooms["rooms"][0]["member"], true);
    assert_eq!(conversations(&api, &tb).await.len(), 1);

    let (status, body) = post(&api, &tb, "/api/rooms/999/join", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = post(&api, &tb, "/api/rooms/x/join", json!({})).await;
    assert_eq!(status, 400);

    let (status, body) = post(
        &api,
        &tb,
        &format!("/api/rooms/{}/leave", lobby.0),
        json!({}),
    )
    .await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)));
    let gone = bob
        .event_where(|f| match f {
            ServerFrame::ConversationRemoved { conversation } => Some(*conversation),
            _ => None,
        })
        .await;
    assert_eq!(gone, lobby);
    assert!(conversations(&api, &tb).await.is_empty());
    server.stop();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    assert_eq!(conversations(&api, &ta).await.len(), 1, "durable");
    assert!(conversations(&api, &tb).await.is_empty());
}

#[tokio::test]
async fn only_the_two_members_may_open_a_dm() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb, tc) = (
        api.signup("alice").await,
        api.signup("bob").await,
        api.signup("carol").await,
    );
    let dm = api.befriend(&ta, &tb, "alice", "bob").await;

    // REST: Carol has no DM with Alice, cannot join theirs, does not see it listed.
    let (status, body) = post(&api, &tc, "/api/users/dm", json!({"username": "alice"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_friends"))
    );
    let (status, body) = post(&api, &tc, &format!("/api/rooms/{}/join", dm.0), json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert!(conversations(&api, &tc).await.is_empty());

    for transport in BOTH {
        let (mut carol, _, _) = connect(&server, transport, &tc).await;
        assert_eq!(
            refused_join(&mut carol, 1, dm).await,
            ErrorCode::Forbidden,
            "{transport:?}"
        );
        assert_eq!(
            refused_join(&mut carol, 2, ConversationId(999)).await,
            ErrorCode::UnknownConversation
        );
        // A receipt for it on the control stream ends the connection.
        carol
            .send(
                0,
                &ClientFrame::Receipt {
                    conversation: dm,
                    delivered: 1,
                    read: 1,
                },
            )
            .await;
        match carol.next_frame(0).await {
            ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::Forbidden),
            other => panic!("expected Forbidden, got {other:?}"),
        }
        let (mut carol, _, _) = connect(&server, transport, &tc).await;
        carol
            .send(0, &ClientFrame::Typing { conversation: dm })
            .await;
        match carol.next_frame(0).await {
            ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::Forbidden),
            other => panic!("expected Forbidden, got {other:?}"),
        }

        // The members may.
        let (mut bob, _, _) = connect(&server, transport, &tb).await;
        let (joined, _) = bob.join(1, dm, None).await;
        assert!(matches!(joined, ServerFrame::Joined { .. }));
    }
}

#[tokio::test]
async fn after_unfriending_sends_are_refused_and_history_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let dm = api.befriend(&ta, &tb, "alice", "bob").await;
    for transport in BOTH {
        let (mut alice, _, _) = connect(&server, transport, &ta).await;
        alice.join(1, dm, None).await;
        alice.say(1, 1, "still friends").await;

        let (status, _) = post(&api, &tb, "/api/users/remove", json!({"username": "alice"})).await;
        assert_eq!(status, 200);
        // The open stream is refused now, with the clear code, and stays open.
        alice
            .send(
                1,
                &ClientFrame::Send {
                    client_id: 2,
                    body: "are we?".into(),
                },
            )
            .await;
        loop {
            match alice.next_frame(1).await {
                ServerFrame::Message(_) => {}
                ServerFrame::Rejected {
                    client_id, code, ..
                } => {
                    assert_eq!(
                        (client_id, code),
                        (2, ErrorCode::NotFriends),
                        "{transport:?}"
                    );
                    break;
                }
                other => panic!("expected Rejected, got {other:?}"),
            }
        }

        // Bob still reads it: replay on join, and history pages.
        let (mut bob, _, _) = connect(&server, transport, &tb).await;
        let (_, replayed) = bob.join(1, dm, None).await;
        assert_eq!(replayed.last().unwrap().body, "still friends");
        let head = replayed.last().unwrap().seq;
        bob.send(
            1,
            &ClientFrame::History {
                before_seq: head + 1,
                limit: 10,
            },
        )
        .await;
        match bob.next_frame(1).await {
            ServerFrame::HistoryPage { messages, .. } => {
                assert_eq!(messages.len() as u64, head, "everything, nothing new");
            }
            other => panic!("expected a history page, got {other:?}"),
        }
        bob.send(
            1,
            &ClientFrame::Send {
                client_id: 7,
                body: "hello?".into(),
            },
        )
        .await;
        match bob.next_frame(1).await {
            ServerFrame::Rejected { code, .. } => assert_eq!(code, ErrorCode::NotFriends),
            other => panic!("expected Rejected, got {other:?}"),
        }
        let (status, body) = post(&api, &tb, "/api/users/dm", json!({"username": "alice"})).await;
        assert_eq!((status, &body["can_send"]), (200, &json!(false)));
        api.befriend(&ta, &tb, "alice", "bob").await;
    }
}

#[tokio::test]
async fn an_offline_user_learns_what_is_new_and_resumes_exactly_the_missed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let room = api.create_room(&ta, "lobby").await;
    let (status, _) = post(&api, &tb, &format!("/api/rooms/{}/join", room.0), json!({})).await;
    assert_eq!(status, 200);
    let dm = api.befriend(&ta, &tb, "alice", "bob").await;

    // Bob is offline; Alice writes 5 in the room and 3 in the DM.
    let (mut alice, _, _) = connect(&server, Transport::WebTransport, &ta).await;
    alice.join(1, room, None).await;
    alice.join(2, dm, None).await;
    for i in 1..=5 {
        alice.say(1, i, &format!("room {i}")).await;
    }
    for i in 1..=3 {
        alice.say(2, i, &format!("dm {i}")).await;
    }

    for (n, transport) in BOTH.into_iter().enumerate() {
        let (mut bob, epoch, list) = connect(&server, transport, &tb).await;
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].conversation, dm, "most recent activity first");
        let by_id = |id| list.iter().find(|s| s.conversation == id).unwrap().clone();
        let (room_view, dm_view) = (by_id(room), by_id(dm));
        assert_eq!(
            (room_view.unread, room_view.head_seq, room_view.read_seq),
            (5, 5, 0)
        );
        assert_eq!(
            (dm_view.unread, dm_view.head_seq, dm_view.read_seq),
            (3, 3, 0)
        );
        assert_eq!(dm_view.last.as_ref().unwrap().preview, "dm 3");
        assert_eq!(dm_view.title, "alice");

        let mut got = Vec::new();
        for (stream, view) in [(1, &room_view), (2, &dm_view)] {
            let resume = Cursor {
                epoch,
                seq: view.read_seq,
            };
            let (_, messages) = bob.join(stream, view.conversation, Some(resume)).await;
            got.extend(messages.into_iter().map(|m| m.body));
        }
        let expected: Vec<String> = (1..=5)
            .map(|i| format!("room {i}"))
            .chain((1..=3).map(|i| format!("dm {i}")))
            .collect();
        assert_eq!(
            got, expected,
            "exactly the 8 missed, in order ({transport:?})"
        );
        quiet(&mut bob, 1).await;
        quiet(&mut bob, 2).await;
        bob.close().await;
        // The REST list says the same.
        let list = conversations(&api, &tb).await;
        assert_eq!(entry(&list, room)["unread"], 5);
        assert_eq!(entry(&list, dm)["unread"], 3, "pass {n}");
    }
}

#[tokio::test]
async fn receipts_reach_the_author_live_never_move_back_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let bob_id = user_id(&api, &tb).await;
    let dm = api.befriend(&ta, &tb, "alice", "bob").await;
    let (mut alice, _, _) = connect(&server, Transport::WebTransport, &ta).await;
    let (mut bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;
    alice.join(1, dm, None).await;
    for i in 1..=3 {
        alice.say(1, i, &format!("m{i}")).await;
    }
    // Bob's list follows live: three messages by Alice.
    for seq in 1..=3 {
        let activity = bob
            .event_where(|f| match f {
                ServerFrame::ConversationActivity { conversation, last } if *conversation == dm => {
                    Some(last.seq)
                }
                _ => None,
            })
            .await;
        assert_eq!(activity, seq);
    }

    let receipt = |delivered, read| ClientFrame::Receipt {
        conversation: dm,
        delivered,
        read,
    };
    bob.send(0, &receipt(3, 2)).await;
    let seen = alice
        .event_where(|f| match f {
            ServerFrame::Receipt {
                conversation,
                user,
                delivered,
                read,
            } if *conversation == dm && *user == bob_id => Some((*delivered, *read)),
            _ => None,
        })
        .await;
    assert_eq!(seen, (3, 2), "Alice sees Bob's receipt live");
    let own = bob
        .event_where(|f| match f {
            ServerFrame::ConversationUpdated(s) if s.conversation == dm => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!((own.delivered_seq, own.read_seq, own.unread), (3, 2, 1));

    // Backwards (and garbage past the head) changes nothing.
    bob.send(0, &receipt(1, 1)).await;
    bob.send(0, &ClientFrame::Ping { nonce: 5 }).await;
    assert_eq!(bob.next_frame(0).await, ServerFrame::Pong { nonce: 5 });
    let list = conversations(&api, &tb).await;
    let view = entry(&list, dm);
    assert_eq!(
        (&view["delivered_seq"], &view["read_seq"]),
        (&json!(3), &json!(2))
    );

    bob.send(0, &receipt(3, 3)).await;
    let seen = alice
        .event_where(|f| match f {
            ServerFrame::Receipt { user, read, .. } if *user == bob_id => Some(*read),
            _ => None,
        })
        .await;
    assert_eq!(seen, 3, "read");

    alice.close().await;
    bob.close().await;
    server.stop();
    let server = TestServer::start(&data);
    let api = server.api();
    let bob_view = entry(&conversations(&api, &tb).await, dm);
    assert_eq!(
        (
            &bob_view["delivered_seq"],
            &bob_view["read_seq"],
            &bob_view["unread"]
        ),
        (&json!(3), &json!(3), &json!(0))
    );
    let alice_view = entry(&conversations(&api, &ta).await, dm);
    assert_eq!(
        (
            &alice_view["peer_delivered_seq"],
            &alice_view["peer_read_seq"]
        ),
        (&json!(3), &json!(3)),
        "Alice sees the same cursors of Bob's after the restart"
    );
    let (alice, _, list) = connect(&server, Transport::WebSocket, &ta).await;
    assert_eq!(list[0].peer_read_seq, Some(3));
    alice.close().await;

    // Every member's cursors, for "seen by"; only for those who may read the conversation.
    let path = format!("/api/conversations/{}/receipts", dm.0);
    let (status, body) = api.call("GET", &path, Some(&ta), None).await;
    assert_eq!(status, 200, "{body}");
    let bob_row = body["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["username"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(
        (&bob_row["delivered_seq"], &bob_row["read_seq"]),
        (&json!(3), &json!(3))
    );
    let tc = api.signup("carol").await;
    let (status, body) = api.call("GET", &path, Some(&tc), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = api
        .call("GET", "/api/conversations/999/receipts", Some(&tc), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_silent_client_goes_offline_within_the_heartbeat_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(&dir.path().join("data"), "heartbeat_ms = 300\n");
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let bob_id = user_id(&api, &tb).await;
    api.befriend(&ta, &tb, "alice", "bob").await;
    for transport in BOTH {
        let (mut alice, _, _) = connect(&server, Transport::WebSocket, &ta).await;
        // Alice keeps her connection alive; Bob connects, then falls silent (no pings).
        let mut nonce = 0;
        let (bob, _, _) = connect(&server, transport, &tb).await;
        let went_silent = Instant::now();
        let mut seen_online = false;
        loop {
            nonce += 1;
            alice.send(0, &ClientFrame::Ping { nonce }).await;
            let presence =
                tokio::time::timeout(Duration::from_millis(100), alice.next_event()).await;
            if let Ok(ServerFrame::Presence {
                user,
                online,
                last_seen_ms,
                ..
            }) = presence
                && user == bob_id
            {
                if online {
                    seen_online = true;
                    continue;
                }
                if seen_online {
                    assert!(last_seen_ms > 0);
                    break;
                }
            }
            assert!(
                went_silent.elapsed() < Duration::from_secs(3),
                "Bob still online after {:?} ({transport:?})",
                went_silent.elapsed()
            );
        }
        // 3 × 300 ms of silence, not less.
        assert!(went_silent.elapsed() >= Duration::from_millis(800));
        drop(bob);
        alice.close().await;
    }
}

#[tokio::test]
async fn typing_is_announced_and_runs_out_without_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let alice_id = user_id(&api, &ta).await;
    let dm = api.befriend(&ta, &tb, "alice", "bob").await;
    let (mut alice, _, _) = connect(&server, Transport::WebTransport, &ta).await;
    let (mut bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;
    alice
        .send(0, &ClientFrame::Typing { conversation: dm })
        .await;
    let started = Instant::now();
    let next_typing = |f: &ServerFrame| match f {
        ServerFrame::Typing {
            conversation,
            user,
            typing,
            ..
        } if *conversation == dm && *user == alice_id => Some(*typing),
        _ => None,
    };
    assert!(bob.event_where(next_typing).await, "typing");
    // A refresh is no news; without more, it runs out after the TTL.
    alice
        .send(0, &ClientFrame::Typing { conversation: dm })
        .await;
    assert!(!bob.event_where(next_typing).await, "stopped");
    let lasted = started.elapsed();
    let ttl = Duration::from_millis(u64::from(quibble_protocol::TYPING_TTL_MS));
    assert!(lasted >= ttl, "ran out after {lasted:?}");
    assert!(
        lasted < ttl + Duration::from_secs(2),
        "ran out after {lasted:?}"
    );

    // Sending a message ends it at once.
    alice
        .send(0, &ClientFrame::Typing { conversation: dm })
        .await;
    assert!(bob.event_where(next_typing).await);
    alice.join(1, dm, None).await;
    let before = Instant::now();
    alice.say(1, 1, "done typing").await;
    assert!(!bob.event_where(next_typing).await);
    assert!(before.elapsed() < ttl);
}

#[tokio::test]
async fn presence_is_seen_by_friends_and_room_co_members_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb, tc, td) = (
        api.signup("alice").await,
        api.signup("bob").await,
        api.signup("carol").await,
        api.signup("dave").await,
    );
    let alice_id = user_id(&api, &ta).await;
    api.befriend(&ta, &tb, "alice", "bob").await;
    let room = api.create_room(&ta, "lobby").await;
    let (status, _) = post(&api, &tc, &format!("/api/rooms/{}/join", room.0), json!({})).await;
    assert_eq!(status, 200);
    let (mut bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;
    let (mut carol, _, _) = connect(&server, Transport::WebTransport, &tc).await;
    let (mut dave, _, _) = connect(&server, Transport::WebSocket, &td).await;

    let (alice, _, _) = connect(&server, Transport::WebTransport, &ta).await;
    let alice_online = |f: &ServerFrame| match f {
        ServerFrame::Presence { user, online, .. } if *user == alice_id => Some(*online),
        _ => None,
    };
    assert!(bob.event_where(alice_online).await, "a friend sees it");
    assert!(
        carol.event_where(alice_online).await,
        "a room co-member sees it"
    );
    alice.close().await;
    assert!(!bob.event_where(alice_online).await);
    assert!(!carol.event_where(alice_online).await);
    let seen = tokio::time::timeout(Duration::from_millis(500), dave.next_event()).await;
    assert!(seen.is_err(), "a stranger sees nothing: {seen:?}");

    // Joining the room makes Dave and Carol co-members: each sees the other at once.
    let (carol_id, dave_id) = (user_id(&api, &tc).await, user_id(&api, &td).await);
    let (status, _) = post(&api, &td, &format!("/api/rooms/{}/join", room.0), json!({})).await;
    assert_eq!(status, 200);
    let online = |who: UserId| {
        move |f: &ServerFrame| match f {
            ServerFrame::Presence { user, online, .. } if *user == who => Some(*online),
            _ => None,
        }
    };
    assert!(dave.event_where(online(carol_id)).await);
    assert!(carol.event_where(online(dave_id)).await);

    // Unfriended, Bob no longer sees Alice, though their DM stays.
    let (status, _) = post(&api, &tb, "/api/users/remove", json!({"username": "alice"})).await;
    assert_eq!(status, 200);
    let (_alice, _, _) = connect(&server, Transport::WebTransport, &ta).await;
    assert!(carol.event_where(alice_online).await);
    let seen =
        tokio::time::timeout(Duration::from_millis(500), bob.event_where(alice_online)).await;
    assert!(seen.is_err(), "an ex-friend sees nothing: {seen:?}");
}

#[tokio::test]
async fn friend_requests_are_rate_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "friend_request_burst = 2\nfriend_requests_per_hour = 1\n",
    );
    let api = server.api();
    let ta = api.signup("alice").await;
    for name in ["bob", "carol", "dave"] {
        api.signup(name).await;
    }
    for name in ["bob", "carol"] {
        let (status, _) = post(&api, &ta, "/api/users/add", json!({"username": name})).await;
        assert_eq!(status, 200);
    }
    let response = api
        .http
        .post(format!("{}/api/users/add", api.base))
        .bearer_auth(&ta)
        .json(&json!({"username": "dave"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let (_, friends) = api.call("GET", "/api/friends", Some(&ta), None).await;
    assert_eq!(
        friends["outgoing"].as_array().unwrap().len(),
        2,
        "nothing done"
    );
}

#[tokio::test]
async fn last_seen_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let bob_id = user_id(&api, &tb).await;
    api.befriend(&ta, &tb, "alice", "bob").await;
    let (bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;
    let (mut alice, _, _) = connect(&server, Transport::WebTransport, &ta).await;
    bob.close().await;
    let offline = |f: &ServerFrame| match f {
        ServerFrame::Presence {
            user,
            online: false,
            last_seen_ms,
            ..
        } if *user == bob_id => Some(*last_seen_ms),
        _ => None,
    };
    let seen = alice.event_where(offline).await;
    assert!(seen > 0);
    alice.close().await;
    server.stop();

    let server = TestServer::start(&data);
    let (mut alice, _, _) = connect(&server, Transport::WebSocket, &ta).await;
    assert_eq!(alice.event_where(offline).await, seen, "from the store");
}

#[tokio::test]
async fn a_version_1_client_gets_no_events_but_counts_as_online() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let bob_id = user_id(&api, &tb).await;
    api.befriend(&ta, &tb, "alice", "bob").await;
    let (mut alice, _, _) = connect(&server, Transport::WebSocket, &ta).await;
    for transport in BOTH {
        let mut old = match transport {
            Transport::WebTransport => RawPeer::webtransport(&server).await,
            Transport::WebSocket => RawPeer::websocket(&server).await,
        };
        old.send(
            0,
            &ClientFrame::Hello {
                version: 1,
                token: tb.clone(),
            },
        )
        .await;
        match old.next_frame(0).await {
            ServerFrame::Welcome { version, .. } => assert_eq!(version, 1),
            other => panic!("expected Welcome, got {other:?}"),
        }
        let online = alice
            .event_where(|f| match f {
                ServerFrame::Presence { user, online, .. } if *user == bob_id => Some(*online),
                _ => None,
            })
            .await;
        assert!(online, "{transport:?}");
        // Something happens to Bob: an old client would choke on the event, so none comes.
        let (status, _) = post(&api, &ta, "/api/users/remove", json!({"username": "bob"})).await;
        assert_eq!(status, 200);
        let dm = api.befriend(&ta, &tb, "alice", "bob").await;
        old.send(0, &ClientFrame::Ping { nonce: 1 }).await;
        match old.received.recv().await {
            Some(support::Received::Frame(0, ServerFrame::Pong { nonce: 1 })) => {}
            other => panic!("expected only the Pong, got {other:?}"),
        }
        // A refusal it cannot decode (`NotFriends`) comes as `Forbidden`.
        let (status, _) = post(&api, &ta, "/api/users/remove", json!({"username": "bob"})).await;
        assert_eq!(status, 200);
        old.join(1, dm, None).await;
        old.send(
            1,
            &ClientFrame::Send {
                client_id: 1,
                body: "hi".into(),
            },
        )
        .await;
        match old.next_frame(1).await {
            ServerFrame::Rejected { code, .. } => assert_eq!(code, ErrorCode::Forbidden),
            other => panic!("expected Rejected, got {other:?}"),
        }
        api.befriend(&ta, &tb, "alice", "bob").await;
        old.close().await;
        alice
            .event_where(|f| match f {
                ServerFrame::Presence {
                    user,
                    online: false,
                    ..
                } if *user == bob_id => Some(()),
                _ => None,
            })
            .await;
    }
}

#[tokio::test]
async fn joining_rooms_is_rate_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "room_join_burst = 2\nroom_joins_per_hour = 1\n",
    );
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let mut rooms = Vec::new();
    for name in ["one", "two", "three", "four"] {
        rooms.push(api.create_room(&ta, name).await);
    }
    let join = |room: ConversationId| format!("/api/rooms/{}/join", room.0);
    for room in &rooms[..2] {
        let (status, _) = post(&api, &tb, &join(*room), json!({})).await;
        assert_eq!(status, 200);
    }
    let response = api
        .http
        .post(format!("{}{}", api.base, join(rooms[2])))
        .bearer_auth(&tb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let (status, body) = post(&api, &tb, &join(rooms[0]), json!({})).await;
    assert_eq!(
        (status, &body["changed"]),
        (200, &json!(false)),
        "already in: free"
    );
    // Past the quota a room's stream still reads the room, without making Bob a member.
    let (mut bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;
    let (joined, _) = bob.join(1, rooms[3], None).await;
    assert!(matches!(joined, ServerFrame::Joined { .. }));
    assert_eq!(conversations(&api, &tb).await.len(), 2);
}

/// A receipt sent right before the peer closes (in the same TCP write as the close) is still
/// stored: the connection handles what its control stream holds before it ends.
#[tokio::test]
async fn a_receipt_sent_right_before_closing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let (ta, tb) = (api.signup("alice").await, api.signup("bob").await);
    let dm = api.befriend(&ta, &tb, "alice", "bob").await;
    let (mut alice, _, _) = connect(&server, Transport::WebSocket, &ta).await;
    alice.join(1, dm, None).await;
    for i in 1..=3 {
        alice.say(1, i, &format!("m{i}")).await;
    }
    let (bob, _, _) = connect(&server, Transport::WebSocket, &tb).await;
    let receipt = ClientFrame::Receipt {
        conversation: dm,
        delivered: 3,
        read: 3,
    };
    bob.send_and_close(0, &receipt).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let view = entry(&conversations(&api, &tb).await, dm);
        if view["read_seq"] == json!(3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the receipt sent before closing was lost: {view}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    alice.close().await;
}
