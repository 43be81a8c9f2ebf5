//! Blocking, against the real server over both transports with a real redb file: the blocker
//! gets hidden markers (contiguous seqs) live, in replay and in history while a third member
//! gets the messages; the blocked user's typing, receipts, presence and activity never reach
//! the blocker; unread counts leave them out; a block ends a friendship and pending requests,
//! and the blocked user's friend request and DM are refused with nothing more than "not
//! allowed"; unblocking restores everything from then on.

mod support;

use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, ConversationSummary, Cursor, ErrorCode, ServerFrame,
    UserId,
};
use serde_json::{Value, json};
use support::{Api, RawPeer, TestServer};

#[derive(Clone, Copy, Debug)]
enum Transport {
    WebTransport,
    WebSocket,
}

const BOTH: [Transport; 2] = [Transport::WebTransport, Transport::WebSocket];

impl Transport {
    fn other(self) -> Transport {
        match self {
            Transport::WebTransport => Transport::WebSocket,
            Transport::WebSocket => Transport::WebTransport,
        }
    }
}

/// A peer signed in as `token`, with its conversation snapshot read (presence that follows it
/// stays queued as events).
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

async fn get(api: &Api, token: &str, path: &str) -> Value {
    let (status, body) = api.call("GET", path, Some(token), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn block(api: &Api, token: &str, username: &str, on: bool) -> Value {
    let path = if on {
        "/api/users/block"
    } else {
        "/api/users/unblock"
    };
    let (status, body) = post(api, token, path, json!({ "username": username })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["blocked"], json!(on), "{body}");
    body
}

async fn user_id(api: &Api, token: &str) -> UserId {
    UserId(
        get(api, token, "/api/account").await["id"]
            .as_u64()
            .expect("id"),
    )
}

async fn join_room(api: &Api, token: &str, room: ConversationId) {
    let path = format!("/api/rooms/{}/join", room.0);
    let (status, body) = post(api, token, &path, json!({})).await;
    assert_eq!(status, 200, "{body}");
}

/// The `History` page before `before_seq` on `stream`.
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

/// What the blocker must see in place of a message: the marker, same seq.
fn assert_hidden(message: &ChatMessage, seq: u64) {
    assert!(
        message.is_hidden() && message.seq == seq && message.author_name.is_empty(),
        "expected the hidden marker of seq {seq}, got {message:?}"
    );
}

fn assert_text(message: &ChatMessage, seq: u64, body: &str) {
    assert_eq!(
        (message.seq, message.body.as_str()),
        (seq, body),
        "{message:?}"
    );
}

#[tokio::test]
async fn the_blocker_gets_hidden_markers_live_in_replay_and_history_and_others_the_messages() {
    for transport in BOTH {
        let dir = tempfile::TempDir::new().unwrap();
        let server = TestServer::start(dir.path());
        let api = server.api();
        let (ta, tb, tc) = (
            api.signup("alice").await,
            api.signup("bob").await,
            api.signup("carol").await,
        );
        let room = api.create_room(&ta, "lobby").await;
        let (mut alice, epoch, _) = connect(&server, transport, &ta).await;
        // A second connection of the blocker, on the other transport: blocks reach all of them.
        let (mut alice2, _, _) = connect(&server, transport.other(), &ta).await;
        let (mut bob, _, _) = connect(&server, transport, &tb).await;
        let (mut carol, _, _) = connect(&server, transport, &tc).await;
        for peer in [&mut alice, &mut alice2, &mut bob, &mut carol] {
            peer.join(1, room, None).await;
        }

        // Blocked while connected: applied live.
        let body = block(&api, &ta, "bob", true).await;
        assert_eq!(
            (body["changed"].as_bool(), body["user"]["username"].as_str()),
            (Some(true), Some("bob"))
        );
        assert_eq!(bob.say(1, 1, "from bob").await, 1);
        assert_eq!(carol.say(1, 1, "from carol").await, 2);

        for peer in [&mut alice, &mut alice2] {
            assert_hidden(&peer.next_message(1).await, 1);
            assert_text(&peer.next_message(1).await, 2, "from carol");
        }
        assert_text(&carol.next_message(1).await, 1, "from bob");
        let page = history(&mut alice, 1, 3).await;
        assert_eq!(page.len(), 2, "{page:?}");
        assert_hidden(&page[0], 1);
        assert_text(&page[1], 2, "from carol");
        let page = history(&mut carol, 1, 3).await;
        assert_text(&page[0], 1, "from bob");

        // Replay on a resumed join and on a plain one: the blocker only.
        let (_, replayed) = alice2.join(2, room, Some(Cursor { epoch, seq: 0 })).await;
        assert_eq!(replayed.len(), 2, "{replayed:?}");
        assert_hidden(&replayed[0], 1);
        assert_text(&replayed[1], 2, "from carol");
        let (_, replayed) = carol.join(2, room, None).await;
        assert_text(&replayed[0], 1, "from bob");

        // Unblocking restores the messages, live and in history, on every connection.
        let body = block(&api, &ta, "bob", false).await;
        assert_eq!(body["changed"], json!(true));
        assert_eq!(bob.say(1, 2, "again").await, 3);
        for peer in [&mut alice, &mut alice2] {
            assert_text(&peer.next_message(1).await, 3, "again");
        }
        let page = history(&mut alice, 1, 4).await;
        assert_text(&page[0], 1, "from bob");
        assert_text(&page[2], 3, "again");
        for peer in [alice, alice2, bob, carol] {
            peer.close().await;
        }
    }
}

/// Collects `peer`'s events until `fence` matches one; returns those before it.
async fn events_until(
    peer: &mut RawPeer,
    fence: impl Fn(&ServerFrame) -> bool,
) -> Vec<ServerFrame> {
    let mut before = Vec::new();
    loop {
        let event = peer.next_event().await;
        if fence(&event) {
            return before;
        }
        before.push(event);
    }
}

/// Whether an event comes from (or is about the presence of) `user`.
fn from_user(event: &ServerFrame, user: UserId) -> bool {
    match event {
        ServerFrame::Presence { user: u, .. }
        | ServerFrame::Typing { user: u, .. }
        | ServerFrame::Receipt { user: u, .. } => *u == user,
        ServerFrame::ConversationActivity { last, .. } => last.author == user,
        _ => false,
    }
}

#[tokio::test]
async fn typing_receipts_presence_and_activity_of_a_blocked_user_do_not_reach_the_blocker() {
    for transport in BOTH {
        let dir = tempfile::TempDir::new().unwrap();
        let server = TestServer::start(dir.path());
        let api = server.api();
        let (ta, tb, tc) = (
            api.signup("alice").await,
            api.signup("bob").await,
            api.signup("carol").await,
        );
        let (bob_id, carol_id) = (user_id(&api, &tb).await, user_id(&api, &tc).await);
        let room = api.create_room(&tc, "lobby").await;
        join_room(&api, &ta, room).await;
        join_room(&api, &tb, room).await;
        block(&api, &ta, "bob", true).await;

        // Bob is online before Alice connects: her first presence frames leave him out.
        let (mut bob, _, _) = connect(&server, transport, &tb).await;
        let (mut carol, _, _) = connect(&server, transport, &tc).await;
        let (mut alice, _, _) = connect(&server, transport, &ta).await;

        // Everything Bob does; Carol (who blocks nobody) sees each.
        carol.join(1, room, None).await;
        carol.say(1, 1, "c1").await;
        bob.join(1, room, None).await;
        bob.send(0, &ClientFrame::Typing { conversation: room })
            .await;
        carol
            .event_where(|e| {
                matches!(e, ServerFrame::Typing { user, typing: true, .. } if *user == bob_id)
                    .then_some(())
            })
            .await;
        bob.send(
            0,
            &ClientFrame::Receipt {
                conversation: room,
                delivered: 1,
                read: 1,
            },
        )
        .await;
        carol
            .event_where(|e| {
                matches!(e, ServerFrame::Receipt { user, read: 1, .. } if *user == bob_id)
                    .then_some(())
            })
            .await;
        assert_eq!(bob.say(1, 1, "hi").await, 2);
        // Carol has the room's stream open: the message is her activity (protocol version 4).
        while carol.next_message(1).await.author != bob_id {}
        bob.close().await;
        carol
            .event_where(|e| {
                matches!(e, ServerFrame::Presence { user, online: false, .. } if *user == bob_id)
                    .then_some(())
            })
            .await;
        let (bob, _, _) = connect(&server, transport, &tb).await;
        carol
            .event_where(|e| {
                matches!(e, ServerFrame::Presence { user, online: true, .. } if *user == bob_id)
                    .then_some(())
            })
            .await;

        // Carol types: by the time Alice hears it, anything of Bob's would have reached her.
        carol
            .send(0, &ClientFrame::Typing { conversation: room })
            .await;
        let before = events_until(
            &mut alice,
            |e| matches!(e, ServerFrame::Typing { user, .. } if *user == carol_id),
        )
        .await;
        let leaked: Vec<&ServerFrame> = before.iter().filter(|e| from_user(e, bob_id)).collect();
        assert!(
            leaked.is_empty(),
            "{transport:?}: the blocker got {leaked:?}"
        );
        assert!(
            before
                .iter()
                .any(|e| matches!(e, ServerFrame::Presence { user, .. } if *user == carol_id)),
            "{transport:?}: Alice does see Carol's presence: {before:?}"
        );
        for peer in [alice, bob, carol] {
            peer.close().await;
        }
    }
}

async fn conversation(api: &Api, token: &str, id: ConversationId) -> Value {
    let list = get(api, token, "/api/conversations").await;
    list["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["id"].as_u64() == Some(id.0))
        .unwrap_or_else(|| panic!("conversation {} not in {list}", id.0))
        .clone()
}

#[tokio::test]
async fn unread_counts_and_receipts_leave_blocked_users_out_and_survive_a_restart() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start(dir.path());
    let api = server.api();
    let (ta, tb, tc) = (
        api.signup("alice").await,
        api.signup("bob").await,
        api.signup("carol").await,
    );
    let bob_id = user_id(&api, &tb).await;
    let room = api.create_room(&tc, "lobby").await;
    join_room(&api, &ta, room).await;
    join_room(&api, &tb, room).await;
    let (mut bob, epoch, _) = connect(&server, Transport::WebSocket, &tb).await;
    let (mut carol, _, _) = connect(&server, Transport::WebTransport, &tc).await;
    bob.join(1, room, None).await;
    carol.join(1, room, None).await;
    bob.say(1, 1, "b1").await;
    bob.say(1, 2, "b2").await;
    carol.say(1, 1, "c1").await;
    bob.say(1, 3, "b3").await;
    bob.send(
        0,
        &ClientFrame::Receipt {
            conversation: room,
            delivered: 4,
            read: 4,
        },
    )
    .await;
    let receipts_path = format!("/api/conversations/{}/receipts", room.0);
    let bob_read = |body: &Value| {
        body["receipts"]
            .as_array()
            .expect("receipts")
            .iter()
            .any(|r| r["user_id"].as_u64() == Some(bob_id.0))
    };
    // Wait until Bob's receipt is stored (Carol, who blocks nobody, lists it).
    for _ in 0..100 {
        if bob_read(&get(&api, &tc, &receipts_path).await) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(bob_read(&get(&api, &tc, &receipts_path).await));

    assert_eq!(conversation(&api, &ta, room).await["unread"], json!(4));
    block(&api, &ta, "bob", true).await;
    let entry = conversation(&api, &ta, room).await;
    assert_eq!(entry["unread"], json!(1), "only Carol's message: {entry}");
    assert_eq!(
        (
            &entry["last"]["author_id"],
            &entry["last"]["author"],
            &entry["last"]["preview"]
        ),
        (&json!(0), &json!(""), &json!("")),
        "the last message is Bob's: shown as the hidden marker: {entry}"
    );
    assert_eq!(conversation(&api, &tc, room).await["unread"], json!(3));
    assert!(!bob_read(&get(&api, &ta, &receipts_path).await));

    // The realtime snapshot says the same, on both transports.
    for transport in BOTH {
        let (alice, _, list) = connect(&server, transport, &ta).await;
        let entry = list
            .iter()
            .find(|c| c.conversation == room)
            .expect("the room");
        assert_eq!(entry.unread, 1, "{transport:?}: {entry:?}");
        assert!(
            entry
                .last
                .as_ref()
                .is_some_and(|l| l.author == UserId::NOBODY && l.preview.is_empty()),
            "{entry:?}"
        );
        alice.close().await;
    }
    for peer in [bob, carol] {
        peer.close().await;
    }

    // After a restart the block is loaded when Alice connects: replay is filtered.
    server.stop();
    let server = TestServer::start(dir.path());
    let (mut alice, _, _) = connect(&server, Transport::WebTransport, &ta).await;
    let (_, replayed) = alice.join(1, room, Some(Cursor { epoch, seq: 0 })).await;
    assert_eq!(replayed.len(), 4);
    for (message, hidden) in replayed.iter().zip([true, true, false, true]) {
        assert_eq!(message.is_hidden(), hidden, "{message:?}");
    }
    assert_text(&replayed[2], 3, "c1");

    block(&server.api(), &ta, "bob", false).await;
    assert_eq!(
        conversation(&server.api(), &ta, room).await["unread"],
        json!(4)
    );
    alice.close().await;
}

#[tokio::test]
async fn a_block_ends_friendship_and_requests_and_refuses_the_blocked_users_request_and_dm() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start(dir.path());
    let api = server.api();
    let (ta, tb, td, te) = (
        api.signup("alice").await,
        api.signup("bob").await,
        api.signup("dave").await,
        api.signup("erin").await,
    );
    // Alice and Bob are friends with a DM; Dave asked Alice; Alice asked Erin.
    post(&api, &ta, "/api/users/add", json!({"username": "bob"})).await;
    let (_, body) = post(&api, &tb, "/api/users/add", json!({"username": "alice"})).await;
    let dm = ConversationId(body["user"]["dm"].as_u64().expect("dm"));
    post(&api, &td, "/api/users/add", json!({"username": "alice"})).await;
    post(&api, &ta, "/api/users/add", json!({"username": "erin"})).await;

    for name in ["bob", "dave", "erin"] {
        assert_eq!(block(&api, &ta, name, true).await["changed"], json!(true));
    }
    let empty = json!({"friends": [], "incoming": [], "outgoing": []});
    for token in [&ta, &tb, &td, &te] {
        assert_eq!(get(&api, token, "/api/friends").await, empty);
    }
    let list = get(&api, &ta, "/api/blocks").await;
    let names: Vec<&str> = list["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b["username"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["bob", "dave", "erin"]);
    assert!(list["blocks"][0]["since_ms"].as_u64().unwrap() > 0);
    assert!(list["blocks"][0]["id"].as_u64().is_some());

    // Bob may neither ask again nor open the DM: "not allowed", nothing more.
    let not_allowed = json!({"error": {"code": "not_allowed", "message": "not allowed"}});
    for path in ["/api/users/add", "/api/users/dm"] {
        let (status, body) = post(&api, &tb, path, json!({"username": "alice"})).await;
        assert_eq!((status, &body), (403, &not_allowed), "{path}");
    }
    // Nor send in the DM, on either transport.
    for transport in BOTH {
        let (mut bob, _, _) = connect(&server, transport, &tb).await;
        bob.join(1, dm, None).await;
        bob.send(
            1,
            &ClientFrame::Send {
                client_id: 1,
                body: "let me in".into(),
            },
        )
        .await;
        assert_eq!(
            bob.next_frame(1).await,
            ServerFrame::Rejected {
                client_id: 1,
                code: ErrorCode::Forbidden,
                reason: "not allowed".into()
            },
            "{transport:?}"
        );
        bob.close().await;
    }
    // The blocker unblocks first to befriend; everyone else is untouched.
    let (status, body) = post(&api, &ta, "/api/users/add", json!({"username": "bob"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("not_allowed"))
    );
    let (status, _) = post(&api, &td, "/api/users/add", json!({"username": "erin"})).await;
    assert_eq!(status, 200);

    // Idempotent, and bad input changes nothing.
    assert_eq!(block(&api, &ta, "bob", true).await["changed"], json!(false));
    let (status, body) = post(&api, &ta, "/api/users/block", json!({"username": "alice"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("cannot_block_self"))
    );
    let (status, body) = post(&api, &ta, "/api/users/block", json!({"username": "nobody"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_user"))
    );
    let (status, _) = post(&api, &ta, "/api/users/block", json!({})).await;
    assert_eq!(status, 400);
    let (status, _) = api.call("GET", "/api/blocks", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        get(&api, &ta, "/api/blocks").await["blocks"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    assert_eq!(block(&api, &ta, "bob", false).await["changed"], json!(true));
    assert_eq!(
        block(&api, &ta, "bob", false).await["changed"],
        json!(false)
    );
    let (status, body) = post(&api, &tb, "/api/users/add", json!({"username": "alice"})).await;
    assert_eq!((status, &body["status"]), (200, &json!("requested")));
}
