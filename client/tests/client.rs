//! End-to-end tests of the client library against the real `quibble` server: refusals,
//! chatting across transports, and reconnecting through a server restart.

use quibble_test_support as support;

use std::collections::HashMap;
use std::time::Duration;

use quibble_client::{
    Api, ChatMessage, Client, ClientError, ClientEvent, ClientOptions, ConversationId, Event, Room,
    TlsError, TransportChoice, TransportKind,
};
use support::TestServer;

const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(30);

/// Sign `user` up; returns the token.
async fn token(api: &Api, user: &str) -> String {
    api.signup(user, PASSWORD).await.expect("signup").token
}

async fn connect(server: &TestServer, token: &str, transport: TransportChoice) -> Client {
    Client::connect(ClientOptions::new(server.url(), token).transport(transport))
        .await
        .expect("connect")
}

/// The first event `pick` accepts (others are skipped), within [`WAIT`].
async fn wait_for<T>(client: &Client, mut pick: impl FnMut(ClientEvent) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("the awaited event in time")
            .expect("the client is still running");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn joined(client: &Client, room: ConversationId) -> u64 {
    wait_for(client, |e| match e {
        ClientEvent::Session(Event::Joined {
            conversation,
            head_seq,
        }) if conversation == room => Some(head_seq),
        _ => None,
    })
    .await
}

async fn message(client: &Client, room: ConversationId) -> ChatMessage {
    wait_for(client, |e| match e {
        ClientEvent::Session(Event::Message(m)) if m.conversation == room => Some(m),
        _ => None,
    })
    .await
}

async fn sent(client: &Client, id: u64) -> u64 {
    wait_for(client, |e| match e {
        ClientEvent::Session(Event::Sent { client_id, seq, .. }) if client_id == id => Some(seq),
        _ => None,
    })
    .await
}

async fn room(api: &Api, token: &str, name: &str) -> Room {
    api.create_room(token, name).await.expect("create room")
}

#[tokio::test]
async fn a_bad_token_is_refused_as_unauthorized_on_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for choice in [
        TransportChoice::WebTransport,
        TransportChoice::WebSocket,
        TransportChoice::Auto,
    ] {
        let options = ClientOptions::new(server.url(), "not-a-token").transport(choice);
        let result = tokio::time::timeout(WAIT, Client::connect(options))
            .await
            .expect("an answer, not a hang");
        assert!(
            matches!(result, Err(ClientError::Unauthorized { .. })),
            "{choice:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn connecting_to_nothing_fails_instead_of_retrying() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for choice in [TransportChoice::WebSocket, TransportChoice::Auto] {
        let options = ClientOptions::new(format!("http://127.0.0.1:{port}"), "t").transport(choice);
        let result = tokio::time::timeout(WAIT, Client::connect(options))
            .await
            .expect("an answer, not a hang");
        assert!(
            matches!(result, Err(ClientError::Connect(_))),
            "{choice:?}: {result:?}"
        );
    }
    let options = ClientOptions::new("not a url at all://", "t");
    assert!(matches!(
        Client::connect(options).await,
        Err(ClientError::InvalidUrl(_))
    ));
}

#[tokio::test]
async fn two_clients_chat_across_transports() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let ann_token = token(&api, "ann").await;
    let ben_token = token(&api, "ben").await;
    let general = room(&api, &ann_token, "General").await.id;

    let ann = connect(&server, &ann_token, TransportChoice::WebTransport).await;
    let ben = connect(&server, &ben_token, TransportChoice::WebSocket).await;
    assert_eq!(ann.transport(), Some(TransportKind::WebTransport));
    assert_eq!(ben.transport(), Some(TransportKind::WebSocket));
    assert_eq!(ann.username(), "ann");
    ann.join(general);
    ben.join(general);
    assert_eq!(joined(&ann, general).await, 0);
    assert_eq!(joined(&ben, general).await, 0);

    let id = ann.send(general, "hi ben");
    let got = message(&ben, general).await;
    assert_eq!(
        (got.author_name.as_str(), got.body.as_str(), got.client_id),
        ("ann", "hi ben", id)
    );
    assert_eq!(got.author, ann.user());
    assert_eq!(sent(&ann, id).await, got.seq);

    let id = ben.send(general, "hello ann");
    let reply = wait_for(&ann, |e| match e {
        ClientEvent::Session(Event::Message(m)) if m.body == "hello ann" => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(reply.seq, 2);
    assert_eq!(sent(&ben, id).await, 2);
    assert!(!ann.load_older(general, 10).await.unwrap());

    ann.close().await;
    assert_eq!(ann.transport(), None);
    assert!(matches!(
        ann.load_older(general, 10).await,
        Err(ClientError::Closed)
    ));
    ben.close().await;
}

#[tokio::test]
async fn a_server_restart_is_survived_and_pending_sends_go_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let port = server.port;
    let api = Api::new(&server.url()).unwrap();
    let token = token(&api, "ivy").await;
    let lobby = room(&api, &token, "Lobby").await.id;
    let client = connect(&server, &token, TransportChoice::Auto).await;
    client.join(lobby);
    joined(&client, lobby).await;
    let first = client.send(lobby, "before");
    assert_eq!(sent(&client, first).await, 1);

    server.shut_down();
    wait_for(&client, |e| {
        matches!(e, ClientEvent::Session(Event::Disconnected)).then_some(())
    })
    .await;
    let second = client.send(lobby, "while the server was down");

    let _server = TestServer::start_on(dir.path(), port);
    let kind = wait_for(&client, |e| match e {
        ClientEvent::TransportChanged(kind) => Some(kind),
        _ => None,
    })
    .await;
    assert_eq!(client.transport(), Some(kind));
    // The resent message is stored once: acknowledged as #2 and delivered as #2.
    let (mut acked, mut echoed) = (None, None);
    wait_for(&client, |e| {
        match e {
            ClientEvent::Session(Event::Sent { client_id, seq, .. }) if client_id == second => {
                acked = Some(seq)
            }
            ClientEvent::Session(Event::Message(m)) if m.seq == 2 => echoed = Some(m),
            _ => {}
        }
        (acked.is_some() && echoed.is_some()).then_some(())
    })
    .await;
    assert_eq!(acked, Some(2));
    assert_eq!(echoed.map(|m| m.client_id), Some(second));
    client.close().await;
}

#[tokio::test]
async fn auto_falls_back_to_websocket_when_webtransport_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let token = token(&api, "joan").await;
    // A CA the server's certificate does not chain to: the WebTransport handshake fails.
    let stranger = wtransport::Identity::self_signed(["localhost"]).unwrap();
    let ca = dir.path().join("other-ca.pem");
    std::fs::write(&ca, stranger.certificate_chain().as_slice()[0].to_pem()).unwrap();

    let options = ClientOptions::new(server.url(), &token).ca_cert(&ca);
    let client = Client::connect(options.clone()).await.expect("fallback");
    assert_eq!(client.transport(), Some(TransportKind::WebSocket));
    client.close().await;

    let only_wt = options.transport(TransportChoice::WebTransport);
    let result = Client::connect(only_wt).await;
    assert!(matches!(result, Err(ClientError::Connect(_))), "{result:?}");

    let missing = ClientOptions::new(server.url(), &token).ca_cert(dir.path().join("nope.pem"));
    let result = Client::connect(missing).await;
    assert!(
        matches!(result, Err(ClientError::Tls(TlsError::CaCert { .. }))),
        "{result:?}"
    );
}

/// Issue 6 finding 12: the server ends a stream on `Leave`, and the client must forget (and
/// finish) it too, or every room switch leaves a dead stream id behind and the connection
/// stops accepting joins after `max_streams_per_connection` (64 by default) of them.
#[tokio::test]
async fn hundreds_of_room_switches_keep_working_on_every_transport() {
    const SWITCHES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let tok = token(&api, "rover").await;
    let rooms = [
        room(&api, &tok, "Lobby").await.id,
        room(&api, &tok, "Garden").await.id,
    ];
    for transport in [TransportChoice::WebSocket, TransportChoice::WebTransport] {
        let client = connect(&server, &tok, transport).await;
        for switch in 0..SWITCHES {
            let here = rooms[switch % 2];
            client.join(here);
            wait_for(&client, |e| match e {
                ClientEvent::Session(Event::Joined { conversation, .. })
                    if conversation == here =>
                {
                    Some(())
                }
                ClientEvent::Session(Event::Error { code, reason, .. }) => {
                    panic!("{transport:?}: join {switch} refused: {reason} ({code})")
                }
                _ => None,
            })
            .await;
            client.leave(here);
        }
        let last = rooms[SWITCHES % 2];
        client.join(last);
        joined(&client, last).await;
        let id = client.send(last, format!("still here over {transport:?}"));
        sent(&client, id).await;
        client.close().await;
    }
}

/// More sends at once than the server's burst allows: those refused with `RateLimited` are
/// resent by the session after the server's hint, so each message is stored exactly once and
/// in the order it was sent, and none is reported as rejected.
#[tokio::test]
async fn sends_past_the_rate_limit_are_retried_until_each_is_stored_once() {
    const SENDS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with_config(dir.path(), "messages_per_second = 4\nmessage_burst = 4\n");
    let api = Api::new(&server.url()).unwrap();
    let alice = token(&api, "alice").await;
    let room = room(&api, &alice, "flood").await;
    let client = connect(&server, &alice, TransportChoice::WebSocket).await;
    client.join(room.id);
    joined(&client, room.id).await;
    let ids: Vec<u64> = (0..SENDS)
        .map(|i| client.send(room.id, format!("m{i}")))
        .collect();
    let mut acks: HashMap<u64, u64> = HashMap::new();
    let mut throttled = 0;
    while acks.len() < SENDS {
        let event = wait_for(&client, |e| match e {
            ClientEvent::Session(
                e @ (Event::Sent { .. } | Event::Throttled { .. } | Event::Rejected { .. }),
            ) => Some(e),
            _ => None,
        })
        .await;
        match event {
            Event::Sent { client_id, seq, .. } => {
                assert!(
                    acks.insert(client_id, seq).is_none(),
                    "{client_id} acked twice"
                );
            }
            Event::Throttled { .. } => throttled += 1,
            other => panic!("a send was refused for good: {other:?}"),
        }
    }
    assert!(
        throttled >= SENDS - 4,
        "only {throttled} refusals: the server's burst was not exceeded"
    );
    let seqs: Vec<u64> = ids.iter().map(|id| acks[id]).collect();
    assert_eq!(
        seqs,
        (1..=SENDS as u64).collect::<Vec<_>>(),
        "acked in send order"
    );
    client.close().await;

    // What the store holds, as a fresh reader sees it: every message once, in order.
    let bob = token(&api, "bob").await;
    let reader = connect(&server, &bob, TransportChoice::WebSocket).await;
    reader.join(room.id);
    assert_eq!(
        joined(&reader, room.id).await,
        SENDS as u64,
        "nothing stored twice"
    );
    let mut bodies = Vec::new();
    while bodies.len() < SENDS {
        bodies.push(message(&reader, room.id).await.body);
    }
    let expected: Vec<String> = (0..SENDS).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
    reader.close().await;
}

#[tokio::test]
async fn a_conversation_given_at_connect_is_joined_on_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let ann = token(&api, "ann").await;
    let general = room(&api, &ann, "General").await.id;
    for choice in [TransportChoice::WebTransport, TransportChoice::WebSocket] {
        let options = ClientOptions::new(server.url(), &ann)
            .transport(choice)
            .join(general);
        let client = Client::connect(options).await.expect("connect");
        // Joined with no `join` after connecting (over WebSocket its `Join` went out with
        // `Hello`, over WebTransport right after `Welcome`).
        assert_eq!(joined(&client, general).await, 0, "{choice:?}");
        client.close().await;
    }
    // A refused `Hello` still refuses the connection, pipelined `Join` or not.
    let options = ClientOptions::new(server.url(), "not-a-token")
        .transport(TransportChoice::WebSocket)
        .join(general);
    let result = tokio::time::timeout(WAIT, Client::connect(options))
        .await
        .expect("an answer, not a hang");
    assert!(
        matches!(result, Err(ClientError::Unauthorized { .. })),
        "{result:?}"
    );
}
