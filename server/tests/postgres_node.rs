//! A node on PostgreSQL (`quibble serve --postgres URL`), against a real `quibble` process and a
//! throwaway PostgreSQL server: everything durable lives in the database, not the data
//! directory; `/healthz` names the engine and turns 503 while the database is gone; a send
//! while it is gone is refused (retryable), and nothing is acknowledged that was not stored.

mod support;

use std::time::Duration;

use quibble_protocol::{ClientFrame, Cursor, ErrorCode, ServerFrame};
use quibble_test_support::postgres::Postgres;
use support::{RawPeer, Received, TestServer};

fn node(data: &std::path::Path, url: &str) -> TestServer {
    TestServer::start_with(data, &["--postgres", url])
}

#[tokio::test]
async fn a_node_keeps_everything_in_postgres_not_its_data_dir() {
    let url = tokio::task::spawn_blocking(|| Postgres::shared().fresh_database())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = node(&dir.path().join("first"), &url);
    let api = server.api();
    let (status, health) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["store"]["engine"], "postgres");
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let room = api.create_room(&alice, "lobby").await;

    let mut a = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome { epoch, .. } = a.hello(&alice).await else {
        panic!("no welcome")
    };
    a.join(1, room, None).await;
    let mut b = RawPeer::webtransport(&server).await;
    b.hello(&bob).await;
    b.join(1, room, None).await;
    for i in 1..=3u64 {
        assert_eq!(a.say(1, i, &format!("hello {i}")).await, i);
        assert_eq!(b.next_message(1).await.body, format!("hello {i}"));
    }
    // A body PostgreSQL cannot hold is refused alone; the stream and the store go on.
    a.send(
        1,
        &ClientFrame::Send {
            client_id: 9,
            body: "nul\0byte".into(),
        },
    )
    .await;
    assert!(matches!(
        a.next_frame(1).await,
        ServerFrame::Rejected {
            client_id: 9,
            code: ErrorCode::InvalidInput,
            ..
        }
    ));
    assert!(server.stop().success());

    // A new node with an EMPTY data directory: the accounts, the room, the history and the
    // epoch come from the database.
    let server = node(&dir.path().join("second"), &url);
    let api = server.api();
    let (status, me) = api.call("GET", "/api/account", Some(&alice), None).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("alice")));
    let mut b = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome { epoch: again, .. } = b.hello(&bob).await else {
        panic!("no welcome")
    };
    assert_eq!(again, epoch, "one store, one epoch");
    let (_, history) = b.join(1, room, Some(Cursor { epoch, seq: 1 })).await;
    let bodies: Vec<&str> = history.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hello 2", "hello 3"]);
    // The client id of an acknowledged message is still known: a resend gets the same seq.
    let mut a = RawPeer::websocket(&server).await;
    a.hello(&alice).await;
    a.join(1, room, None).await;
    assert_eq!(a.say(1, 3, "hello 3").await, 3);
    assert_eq!(a.say(1, 4, "hello 4").await, 4);
}

#[tokio::test]
async fn while_postgres_is_gone_sends_are_refused_and_health_says_so() {
    let mut db = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = db.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let server = node(&dir.path().join("data"), &url);
    let api = server.api();
    let alice = api.signup("alice").await;
    let room = api.create_room(&alice, "lobby").await;
    let mut a = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome { epoch, .. } = a.hello(&alice).await else {
        panic!("no welcome")
    };
    a.join(1, room, None).await;
    assert_eq!(a.say(1, 1, "before").await, 1);

    let db_down = tokio::task::spawn_blocking(move || {
        db.kill();
        db
    });
    let mut db = db_down.await.unwrap();
    let (status, health) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["store"]["engine"], "postgres");
    assert_eq!(health["store"]["ok"], false);

    // A send now is not acknowledged: the stream ends with a retryable error.
    a.send(
        1,
        &ClientFrame::Send {
            client_id: 2,
            body: "during".into(),
        },
    )
    .await;
    let refused = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match a.next_on(1).await {
                Received::Frame(_, ServerFrame::Sent { .. }) => {
                    panic!("acknowledged without a database")
                }
                Received::Frame(_, ServerFrame::Error { code, .. }) => return code,
                Received::Frame(..) => continue,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    })
    .await
    .expect("the send is answered within the store's deadlines");
    assert_eq!(refused, ErrorCode::Internal);

    let db_up = tokio::task::spawn_blocking(move || {
        db.start_again();
        db
    });
    let _db = db_up.await.unwrap();
    let (status, health) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "{health}");
    // The client retries with the same client id and gets it stored once.
    let mut a = RawPeer::websocket(&server).await;
    a.hello(&alice).await;
    let (_, history) = a.join(1, room, Some(Cursor { epoch, seq: 0 })).await;
    assert_eq!(history.len(), 1, "nothing of the refused send was stored");
    assert_eq!(a.say(1, 2, "during").await, 2);
    assert_eq!(
        a.say(1, 2, "during").await,
        2,
        "a resend is the same message"
    );
}
