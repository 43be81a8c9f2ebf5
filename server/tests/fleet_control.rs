//! Fleet-wide control between two real `quibble` nodes on one PostgreSQL and one Redis: what
//! a user or an admin does through one node takes effect on the connections of the other,
//! within a second — a ban, a sign-out, an IP ban, a block (the blocker's stream on the other
//! node gets the hidden marker) — typing reaches members online on the other node, and runs
//! out there by itself when the typer's node dies.

mod support;

use quibble_protocol::{ClientFrame, ConversationId, ErrorCode, ServerFrame, UserId};
use quibble_test_support::postgres::Postgres;
use quibble_test_support::redis::Redis;
use serde_json::json;
use support::fleet::Fleet;
use support::live::{ban, cut_with, still_live, welcomed};
use support::{RawPeer, TestServer};

/// Two nodes of one fleet (`a` is node 0, `b` node 1) and the Redis they share.
struct Two {
    fleet: Fleet,
    _redis: Redis,
}

impl Two {
    fn a(&self) -> &TestServer {
        self.fleet.node(0)
    }

    fn b(&self) -> &TestServer {
        self.fleet.node(1)
    }
}

async fn two_nodes() -> Two {
    let url = tokio::task::spawn_blocking(|| Postgres::shared().fresh_database())
        .await
        .unwrap();
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let fleet = Fleet::start(2, &url, &[redis.url()]);
    Two {
        fleet,
        _redis: redis,
    }
}

#[tokio::test]
async fn a_ban_through_one_node_cuts_the_user_on_the_other() {
    let fleet = two_nodes().await;
    let api_a = fleet.a().api();
    let root = api_a.signup("root").await;
    support::promote(fleet.a(), "root");
    let bob = api_a.signup("bob").await;
    let carol = api_a.signup("carol").await;
    let mut wt = welcomed(fleet.b(), false, &bob).await;
    let mut ws = welcomed(fleet.b(), true, &bob).await;
    let mut bystander = welcomed(fleet.b(), true, &carol).await;

    ban(&api_a, &root, "bob", "spam").await;
    cut_with(&mut wt, ErrorCode::Banned, "banned: spam").await;
    cut_with(&mut ws, ErrorCode::Banned, "banned: spam").await;
    still_live(&mut bystander).await;
}

#[tokio::test]
async fn a_sign_out_through_one_node_ends_that_session_on_the_other_and_no_other() {
    let fleet = two_nodes().await;
    let token = fleet.a().api().signup("alice").await;
    let other = fleet.b().api().login("alice").await;
    let mut signed_out = welcomed(fleet.b(), false, &token).await;
    let mut kept = welcomed(fleet.b(), true, &other).await;

    let (status, body) = fleet
        .a()
        .api()
        .call("POST", "/api/logout", Some(&token), None)
        .await;
    assert_eq!(status, 204, "{body}");
    cut_with(&mut signed_out, ErrorCode::Unauthorized, "signed out").await;
    still_live(&mut kept).await;
}

#[tokio::test]
async fn an_ip_ban_on_one_node_cuts_live_connections_on_the_other_until_removed() {
    let fleet = two_nodes().await;
    let token = fleet.a().api().signup("alice").await;
    let mut live = welcomed(fleet.b(), true, &token).await;

    let run = fleet
        .a()
        .admin(&["ip-ban", "add", "127.0.0.0/8", "--reason", "abuse"]);
    assert!(run.ok, "{run:?}");
    cut_with(
        &mut live,
        ErrorCode::Banned,
        "this address is banned: abuse",
    )
    .await;
    // Every door of the other node refuses the address now (REST here).
    let api_b = fleet.b().api();
    let (status, _) = api_b.call("GET", "/api/account", Some(&token), None).await;
    assert_eq!(status, 403);

    let run = fleet.a().admin(&["ip-ban", "remove", "127.0.0.0/8"]);
    assert!(run.ok, "{run:?}");
    // The other node lets the address back once it has heard (within a second).
    let started = std::time::Instant::now();
    loop {
        let (status, _) = api_b.call("GET", "/api/account", Some(&token), None).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < support::live::AT_ONCE,
            "still {status} after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    welcomed(fleet.b(), false, &token).await;
}

#[tokio::test]
async fn typing_and_blocks_reach_the_other_node() {
    let fleet = two_nodes().await;
    let (api_a, api_b) = (fleet.a().api(), fleet.b().api());
    let alice = api_a.signup("alice").await;
    let bob = api_a.signup("bob").await;
    let room: ConversationId = api_a.create_room(&alice, "lobby").await;
    api_b.join_room(&bob, room).await;

    let mut a = RawPeer::websocket(fleet.a()).await;
    a.hello(&alice).await;
    a.join(1, room, None).await;
    let mut b = RawPeer::webtransport(fleet.b()).await;
    b.hello(&bob).await;
    b.join(1, room, None).await;

    // Typing on node A reaches bob on node B; alice's message ends it there too.
    a.send(0, &ClientFrame::Typing { conversation: room }).await;
    assert_eq!(typing_of(&mut b).await, (room, "alice".to_owned(), true));
    assert_eq!(a.say(1, 1, "hello").await, 1);
    assert_eq!(typing_of(&mut b).await, (room, "alice".to_owned(), false));
    assert_eq!(b.next_message(1).await.body, "hello");

    // Bob blocks alice through node A: his stream on node B hides her next message.
    let (status, body) = api_a
        .call(
            "POST",
            "/api/users/block",
            Some(&bob),
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(support::live::AT_ONCE).await;
    assert_eq!(a.say(1, 2, "can you read this").await, 2);
    let hidden = b.next_message(1).await;
    assert_eq!(hidden.seq, 2);
    assert!(hidden.is_hidden(), "{hidden:?}");
}

/// The next `Typing` event on `peer`, skipping other events.
async fn typing_of(peer: &mut RawPeer) -> (ConversationId, String, bool) {
    peer.event_where(|event| match event {
        ServerFrame::Typing {
            conversation,
            username,
            typing,
            ..
        } => Some((*conversation, username.clone(), *typing)),
        _ => None,
    })
    .await
}

/// The next `Presence` of `who` on `peer` (within a second): whether online.
async fn presence_of(peer: &mut RawPeer, who: UserId) -> bool {
    let next = peer.event_where(|event| match event {
        ServerFrame::Presence { user, online, .. } if *user == who => Some(*online),
        _ => None,
    });
    tokio::time::timeout(support::live::AT_ONCE, next)
        .await
        .expect("no presence within a second")
}

async fn id_of(server: &TestServer, token: &str) -> UserId {
    let (_, body) = server
        .api()
        .call("GET", "/api/account", Some(token), None)
        .await;
    UserId(body["id"].as_u64().expect("id"))
}

#[tokio::test]
async fn presence_spans_the_fleet_friends_and_room_members_alike() {
    let fleet = two_nodes().await;
    let api_a = fleet.a().api();
    let alice = api_a.signup("alice").await;
    let bob = api_a.signup("bob").await;
    let carol = api_a.signup("carol").await;
    let alice_id = id_of(fleet.a(), &alice).await;
    // Bob is alice's friend; carol shares a room with her.
    for (token, name) in [(&alice, "bob"), (&bob, "alice")] {
        let (status, body) = api_a
            .call(
                "POST",
                "/api/users/add",
                Some(token),
                Some(json!({"username": name})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let room = api_a.create_room(&alice, "lobby").await;
    api_a.join_room(&carol, room).await;

    let mut b = welcomed(fleet.b(), true, &bob).await;
    let mut c = welcomed(fleet.b(), false, &carol).await;
    // Alice comes online on node A: both hear it on node B.
    let a = welcomed(fleet.a(), false, &alice).await;
    assert!(presence_of(&mut b, alice_id).await);
    assert!(presence_of(&mut c, alice_id).await);
    // Someone connecting to node B now finds her online in the snapshot.
    let mut b2 = welcomed(fleet.b(), true, &bob).await;
    assert!(presence_of(&mut b2, alice_id).await);
    // She leaves node A: both hear she is offline.
    a.close().await;
    assert!(!presence_of(&mut b, alice_id).await);
    assert!(!presence_of(&mut c, alice_id).await);
}

#[tokio::test]
async fn typing_on_a_node_that_dies_runs_out_on_the_others() {
    let mut two = two_nodes().await;
    let api_a = two.a().api();
    let alice = api_a.signup("alice").await;
    let bob = api_a.signup("bob").await;
    let room = api_a.create_room(&alice, "lobby").await;
    api_a.join_room(&bob, room).await;
    let mut a = RawPeer::websocket(two.a()).await;
    a.hello(&alice).await;
    a.join(1, room, None).await;
    let mut b = RawPeer::webtransport(two.b()).await;
    b.hello(&bob).await;
    b.join(1, room, None).await;

    a.send(0, &ClientFrame::Typing { conversation: room }).await;
    assert_eq!(typing_of(&mut b).await, (room, "alice".to_owned(), true));
    // Node A dies before it can say she stopped: node B runs it out itself.
    let started = std::time::Instant::now();
    two.fleet.kill(0);
    assert_eq!(typing_of(&mut b).await, (room, "alice".to_owned(), false));
    let ttl = std::time::Duration::from_millis(u64::from(quibble_protocol::TYPING_TTL_MS));
    assert!(
        started.elapsed() < ttl + std::time::Duration::from_secs(2),
        "ran out after {:?}",
        started.elapsed()
    );
}
