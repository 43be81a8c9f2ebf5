//! End-to-end tests of the social features through the client library against the real
//! `quibble` server, one user on each transport: friend requests with live events on both
//! sides, offline delivery from the conversation list (unread counts, then exactly the missed
//! messages once, in order), receipts from reader to author, typing seen and running out.

use quibble_test_support as support;

use std::time::Duration;

use quibble_client::{
    Api, ChatMessage, Client, ClientEvent, ClientOptions, ConversationId, ConversationKind,
    ConversationSummary, Event, FriendOutcome, FriendStatus, TransportChoice, UserId,
};
use support::TestServer;

const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(20);
const BOTH: [TransportChoice; 2] = [TransportChoice::WebTransport, TransportChoice::WebSocket];

async fn signup(api: &Api, user: &str) -> (String, UserId) {
    let login = api.signup(user, PASSWORD).await.expect("signup");
    (login.token, login.user.id)
}

async fn connect(server: &TestServer, token: &str, transport: TransportChoice) -> Client {
    Client::connect(ClientOptions::new(server.url(), token).transport(transport))
        .await
        .expect("connect")
}

/// The first session event `pick` accepts (others are skipped), within [`WAIT`].
async fn wait_for<T>(client: &Client, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("the awaited event in time")
            .expect("the client is still running");
        if let ClientEvent::Session(event) = event
            && let Some(found) = pick(event)
        {
            return found;
        }
    }
}

async fn list(client: &Client) -> Vec<ConversationSummary> {
    wait_for(client, |e| match e {
        Event::ConversationList(list) => Some(list),
        _ => None,
    })
    .await
}

async fn friend_event(client: &Client, other: UserId) -> (FriendStatus, Option<ConversationId>) {
    wait_for(client, |e| match e {
        Event::Friend {
            user, status, dm, ..
        } if user == other => Some((status, dm)),
        _ => None,
    })
    .await
}

/// The next `n` messages of the given conversations, then nothing more for a moment.
async fn exactly(client: &Client, n: usize) -> Vec<ChatMessage> {
    let mut got = Vec::new();
    while got.len() < n {
        got.push(
            wait_for(client, |e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .await,
        );
    }
    let more = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            if let Some(ClientEvent::Session(Event::Message(m))) = client.next_event().await {
                return m;
            }
        }
    })
    .await;
    assert!(
        more.is_err(),
        "a message beyond the expected ones: {more:?}"
    );
    got
}

/// Alice and Bob become friends over REST; returns their DM.
async fn befriend(api: &Api, ta: &str, tb: &str) -> ConversationId {
    let asked = api.add_friend(ta, "bob").await.expect("add");
    assert_eq!(asked.status, FriendOutcome::Requested);
    let accepted = api.add_friend(tb, "alice").await.expect("accept");
    assert_eq!(accepted.status, FriendOutcome::Accepted);
    accepted.user.dm.expect("friends have a DM")
}

#[tokio::test]
async fn a_friend_request_is_heard_live_on_both_sides_and_opens_a_dm() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let (ta, alice_id) = signup(&api, "alice").await;
    let (tb, bob_id) = signup(&api, "bob").await;
    let alice = connect(&server, &ta, TransportChoice::WebTransport).await;
    let bob = connect(&server, &tb, TransportChoice::WebSocket).await;
    assert_eq!(list(&alice).await, []);
    assert_eq!(list(&bob).await, []);

    let asked = api.add_friend(&ta, "bob").await.expect("add");
    assert_eq!(asked.status, FriendOutcome::Requested);
    assert_eq!(
        friend_event(&alice, bob_id).await,
        (FriendStatus::Outgoing, None)
    );
    assert_eq!(
        friend_event(&bob, alice_id).await,
        (FriendStatus::Incoming, None)
    );
    let pending = api.friends(&tb).await.expect("friends");
    assert_eq!(pending.incoming.len(), 1);
    assert_eq!(pending.incoming[0].username, "alice");

    let accepted = api.add_friend(&tb, "alice").await.expect("accept");
    assert_eq!(accepted.status, FriendOutcome::Accepted);
    let dm = accepted.user.dm.expect("a DM");
    assert_eq!(
        friend_event(&alice, bob_id).await,
        (FriendStatus::Friends, Some(dm))
    );
    assert_eq!(
        friend_event(&bob, alice_id).await,
        (FriendStatus::Friends, Some(dm))
    );
    // The DM joins both lists live, titled with the other's name.
    for (client, peer, title) in [(&alice, bob_id, "bob"), (&bob, alice_id, "alice")] {
        let entry = wait_for(client, |e| match e {
            Event::ConversationUpdated(s) if s.conversation == dm => Some(s),
            _ => None,
        })
        .await;
        assert_eq!(entry.kind, ConversationKind::Dm { peer });
        assert_eq!(entry.title, title);
    }
    let opened = api.dm(&ta, "bob").await.expect("open the DM");
    assert_eq!((opened.conversation, opened.can_send), (dm, true));

    // Unfriending: both hear it; the DM stays readable but closed to sends.
    let removed = api.remove_friend(&tb, "alice").await.expect("remove");
    assert_eq!(removed.status, FriendOutcome::Unfriended);
    assert_eq!(friend_event(&alice, bob_id).await.0, FriendStatus::None);
    assert_eq!(friend_event(&bob, alice_id).await.0, FriendStatus::None);
    assert!(!api.dm(&ta, "bob").await.expect("still readable").can_send);
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn an_offline_user_sees_unread_counts_and_gets_exactly_the_missed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let (ta, _) = signup(&api, "alice").await;
    let (tb, _) = signup(&api, "bob").await;
    let room = api.create_room(&ta, "lobby").await.expect("room").id;
    assert!(api.join_room(&tb, room).await.expect("join").member);
    let dm = befriend(&api, &ta, &tb).await;
    let alice = connect(&server, &ta, TransportChoice::WebTransport).await;
    alice.join(room);
    alice.join(dm);
    let say = |conversation, text: String| {
        alice.send(conversation, text);
    };

    // Bob is offline; Alice writes 5 in the room and 3 in the DM. Bob connects on one
    // transport and reads everything; Alice writes 2 + 1 more; Bob connects on the other.
    let rounds = [(1..=5, 1..=3), (6..=7, 4..=4)];
    for (transport, (in_room, in_dm)) in BOTH.into_iter().zip(rounds) {
        let expected: Vec<String> = in_room
            .clone()
            .map(|i| format!("room {i}"))
            .chain(in_dm.clone().map(|i| format!("dm {i}")))
            .collect();
        for i in in_room.clone() {
            say(room, format!("room {i}"));
        }
        for i in in_dm.clone() {
            say(dm, format!("dm {i}"));
        }
        // Every send durable before Bob looks.
        let mut acked = 0;
        while acked < expected.len() {
            wait_for(&alice, |e| matches!(e, Event::Sent { .. }).then_some(())).await;
            acked += 1;
        }

        let bob = connect(&server, &tb, transport).await;
        let summaries = list(&bob).await;
        let unread = |id| {
            summaries
                .iter()
                .find(|s| s.conversation == id)
                .map(|s| (s.unread, s.read_seq))
                .expect("listed")
        };
        let (room_unread, room_read) = unread(room);
        let (dm_unread, dm_read) = unread(dm);
        assert_eq!(
            (room_unread, dm_unread),
            (in_room.clone().count() as u64, in_dm.clone().count() as u64),
            "{transport:?}"
        );
        bob.join_from(room, room_read);
        let mut got = exactly(&bob, in_room.count()).await;
        bob.join_from(dm, dm_read);
        got.extend(exactly(&bob, in_dm.count()).await);
        let bodies: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
        assert_eq!(bodies, expected, "exactly the missed ones, once, in order");

        // Bob reads both; the server's list says so before he goes.
        bob.mark_read(room);
        bob.mark_read(dm);
        for id in [room, dm] {
            wait_for(&bob, |e| match e {
                Event::ConversationUpdated(s) if s.conversation == id && s.unread == 0 => Some(()),
                _ => None,
            })
            .await;
        }
        bob.close().await;
    }
    alice.close().await;
}

#[tokio::test]
async fn the_author_sees_delivered_then_read_and_typing_that_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let (ta, _) = signup(&api, "alice").await;
    let (tb, bob_id) = signup(&api, "bob").await;
    let dm = befriend(&api, &ta, &tb).await;
    let alice = connect(&server, &ta, TransportChoice::WebSocket).await;
    let bob = connect(&server, &tb, TransportChoice::WebTransport).await;
    alice.join(dm);
    bob.join(dm);
    for client in [&alice, &bob] {
        wait_for(client, |e| matches!(e, Event::Joined { .. }).then_some(())).await;
    }

    let id = alice.send(dm, "hello bob");
    let seq = wait_for(&alice, |e| match e {
        Event::Sent { client_id, seq, .. } if client_id == id => Some(seq),
        _ => None,
    })
    .await;
    let receipt = |want_read: u64| {
        let alice = &alice;
        async move {
            wait_for(alice, |e| match e {
                Event::Receipt {
                    conversation,
                    user,
                    delivered,
                    read,
                } if conversation == dm && user == bob_id && read >= want_read => {
                    Some((delivered, read))
                }
                _ => None,
            })
            .await
        }
    };
    // Bob's client has it (not on screen): delivered, not read.
    assert_eq!(receipt(0).await, (seq, 0));
    // Bob opens the conversation: read.
    bob.set_viewing(Some(dm));
    assert_eq!(receipt(seq).await, (seq, seq));

    // Typing: Bob sees Alice typing, then it runs out (TTL 5 s) without a refresh.
    alice.typing(dm);
    let started = tokio::time::Instant::now();
    let typing = |want: bool| {
        let bob = &bob;
        async move {
            wait_for(bob, |e| match e {
                Event::Typing {
                    conversation,
                    username,
                    typing,
                    ..
                } if conversation == dm && typing == want => Some(username),
                _ => None,
            })
            .await
        }
    };
    assert_eq!(typing(true).await, "alice");
    assert_eq!(typing(false).await, "alice");
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_secs(4) && lasted < Duration::from_secs(9),
        "ran out after {lasted:?}"
    );
    alice.close().await;
    bob.close().await;
}
