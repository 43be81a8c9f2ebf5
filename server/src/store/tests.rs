//! Tests of the store against a real redb file in a temporary directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use redb::Database;
use tempfile::TempDir;

use super::tables::{META, META_SCHEMA_VERSION};
use super::*;
use crate::auth::hash_token;

type Seen = Arc<Mutex<Vec<ChatMessage>>>;

/// A hook that records every message it is called with.
fn recording_hook() -> (CommitHook, Seen) {
    let seen = Seen::default();
    let sink = Arc::clone(&seen);
    let hook: CommitHook = Box::new(move |m| sink.lock().unwrap().push(m.clone()));
    (hook, seen)
}

fn open(path: &Path) -> (Store, Seen) {
    let (hook, seen) = recording_hook();
    (Store::open(path, hook).unwrap(), seen)
}

fn db_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("quibble.redb")
}

async fn room(store: &Store, name: &str) -> ConversationId {
    store.create_room(name, UserId(1)).await.unwrap().id
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn users_are_unique_case_insensitively_and_the_first_is_admin() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));

    let alice = store.create_user("Alice", "phc-a".into()).await.unwrap();
    assert_eq!(alice.id, UserId(1));
    assert_eq!(alice.username, "Alice");
    assert_eq!(alice.password_phc, "phc-a");
    assert_eq!(alice.role, Role::Admin);
    assert!(alice.created_at_ms > 0);

    assert!(matches!(
        store.create_user("aLICE", "phc-x".into()).await,
        Err(StoreError::NameTaken)
    ));

    let bob = store.create_user("bob", "phc-b".into()).await.unwrap();
    assert_eq!(bob.role, Role::User);
    assert_ne!(bob.id, alice.id);

    assert_eq!(store.user(alice.id).unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_name("ALICE").unwrap(), Some(alice));
    assert_eq!(store.user_by_name("BoB").unwrap(), Some(bob));
    assert_eq!(store.user_by_name("carol").unwrap(), None);
    assert_eq!(store.user(UserId(999)).unwrap(), None);
}

#[tokio::test]
async fn sessions_expire_and_can_be_deleted() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let alice = store.create_user("alice", "phc".into()).await.unwrap();
    let token = hash_token("token-1");

    store.create_session(token, alice.id, 1_000).await.unwrap();
    assert_eq!(
        store.session_user(&token, 999).unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.session_user(&token, 1_000).unwrap(), None);
    assert_eq!(store.session_user(&hash_token("other"), 0).unwrap(), None);

    assert!(store.delete_session(token).await.unwrap());
    assert_eq!(store.session_user(&token, 0).unwrap(), None);
    assert!(!store.delete_session(token).await.unwrap());
}

#[tokio::test]
async fn rooms_have_unique_names_and_list_sorted() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));

    let general = store.create_room("General", UserId(7)).await.unwrap();
    assert_eq!(general.name, "General");
    assert_eq!(general.created_by, UserId(7));
    assert!(matches!(
        store.create_room("general", UserId(8)).await,
        Err(StoreError::NameTaken)
    ));
    let beta = store.create_room("beta", UserId(7)).await.unwrap();
    let alpha = store.create_room("Alpha", UserId(7)).await.unwrap();
    assert_eq!(
        BTreeSet::from([general.id, beta.id, alpha.id]).len(),
        3,
        "room ids are distinct"
    );

    let names: Vec<_> = store.rooms().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["Alpha", "beta", "General"]);
    assert_eq!(store.room(general.id).unwrap(), Some(general));
    assert_eq!(store.room(ConversationId(999)).unwrap(), None);
}

#[tokio::test]
async fn append_assigns_seqs_per_conversation() {
    let dir = TempDir::new().unwrap();
    let (store, seen) = open(&db_path(&dir));
    let a = room(&store, "a").await;
    let b = room(&store, "b").await;
    assert_eq!(store.head(a).unwrap(), 0);

    for (i, conversation) in [a, a, b, a].into_iter().enumerate() {
        let body = format!("m{i}");
        let done = store
            .append(conversation, UserId(1), "alice", i as u64, &body)
            .await
            .unwrap();
        assert!(!done.duplicate);
        assert_eq!(done.message.body, body);
        assert_eq!(done.message.author_name, "alice");
    }
    assert_eq!(store.head(a).unwrap(), 3);
    assert_eq!(store.head(b).unwrap(), 1);
    let in_a = store.messages_after(a, 0, 100).unwrap();
    assert_eq!(seqs(&in_a), [1, 2, 3]);
    assert!(in_a.windows(2).all(|w| w[0].sent_at_ms <= w[1].sent_at_ms));
    assert_eq!(seen.lock().unwrap().len(), 4);

    assert!(matches!(
        store
            .append(ConversationId(999), UserId(1), "alice", 99, "x")
            .await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn a_resent_client_id_returns_the_original() {
    let dir = TempDir::new().unwrap();
    let (store, seen) = open(&db_path(&dir));
    let a = room(&store, "a").await;

    let first = store
        .append(a, UserId(1), "alice", 7, "hello")
        .await
        .unwrap();
    let again = store
        .append(a, UserId(1), "alice", 7, "hello?")
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(store.head(a).unwrap(), 1);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "no hook call for a duplicate"
    );

    // Client ids are per author.
    let other = store.append(a, UserId(2), "bob", 7, "hi").await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 2);
}

#[tokio::test]
async fn history_pages_forwards_and_backwards() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let a = room(&store, "a").await;
    let b = room(&store, "b").await;
    for i in 0..25u64 {
        store
            .append(a, UserId(1), "alice", i, "in a")
            .await
            .unwrap();
        store
            .append(b, UserId(1), "alice", 100 + i, "in b")
            .await
            .unwrap();
    }

    assert_eq!(
        seqs(&store.messages_after(a, 0, 10).unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_after(a, 20, 10).unwrap()),
        [21, 22, 23, 24, 25]
    );
    assert!(store.messages_after(a, 25, 10).unwrap().is_empty());
    assert!(store.messages_after(a, u64::MAX, 10).unwrap().is_empty());
    assert!(store.messages_after(a, 0, 0).unwrap().is_empty());

    assert_eq!(
        seqs(&store.messages_before(a, 26, 10).unwrap()),
        (16..=25).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_before(a, u64::MAX, 3).unwrap()),
        [23, 24, 25]
    );
    assert_eq!(
        seqs(&store.messages_before(a, 16, 10).unwrap()),
        (6..=15).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_before(a, 6, 10).unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert!(store.messages_before(a, 1, 10).unwrap().is_empty());
    assert!(store.messages_before(a, 0, 10).unwrap().is_empty());
    assert!(store.messages_before(a, 10, 0).unwrap().is_empty());

    let all_a = store.messages_after(a, 0, 1000).unwrap();
    assert!(
        all_a
            .iter()
            .all(|m| m.conversation == a && m.body == "in a")
    );
    assert_eq!(
        store.messages_before(ConversationId(999), 10, 10).unwrap(),
        []
    );
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let (store, _) = open(&path);
    let epoch = store.epoch();
    assert_ne!(epoch, 0);
    let alice = store.create_user("alice", "phc".into()).await.unwrap();
    let token = hash_token("t");
    store
        .create_session(token, alice.id, u64::MAX)
        .await
        .unwrap();
    let general = store.create_room("General", alice.id).await.unwrap();
    let first = store
        .append(general.id, alice.id, "alice", 1, "before restart")
        .await
        .unwrap();
    store.close().await;
    drop(store);

    let (store, seen) = open(&path);
    assert_eq!(store.epoch(), epoch);
    assert_eq!(store.user(alice.id).unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_name("ALICE").unwrap(), Some(alice.clone()));
    assert_eq!(store.session_user(&token, 0).unwrap(), Some(alice.clone()));
    assert_eq!(store.rooms().unwrap(), std::slice::from_ref(&general));
    assert_eq!(store.head(general.id).unwrap(), 1);
    assert_eq!(
        store.messages_after(general.id, 0, 10).unwrap(),
        std::slice::from_ref(&first.message)
    );

    // Counters and the de-duplication index carry on.
    let resent = store
        .append(general.id, alice.id, "alice", 1, "before restart")
        .await
        .unwrap();
    assert!(resent.duplicate);
    assert_eq!(resent.message, first.message);
    let next = store
        .append(general.id, alice.id, "alice", 2, "after")
        .await
        .unwrap();
    assert_eq!(next.message.seq, 2);
    assert!(next.message.sent_at_ms >= first.message.sent_at_ms);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let bob = store.create_user("bob", "phc".into()).await.unwrap();
    assert_eq!(bob.role, Role::User);
    assert_ne!(bob.id, alice.id);
    let random = store.create_room("random", alice.id).await.unwrap();
    assert_ne!(random.id, general.id);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_group_commit_in_order() {
    let dir = TempDir::new().unwrap();
    let (store, seen) = open(&db_path(&dir));
    let a = room(&store, "a").await;

    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let store = store.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let done = store
                    .append(a, UserId(1), "alice", i, &format!("m{i}"))
                    .await
                    .unwrap();
                assert!(!done.duplicate);
                // The hook has seen the message before the appender hears back.
                assert!(seen.lock().unwrap().contains(&done.message));
                done.message.seq
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
    assert_eq!(seqs(&seen.lock().unwrap()), (1..=200).collect::<Vec<_>>());
    assert_eq!(store.head(a).unwrap(), 200);
}

/// How many requests wait in the writer's queue.
fn queued(store: &Store) -> usize {
    store
        .inner
        .sender
        .lock()
        .unwrap()
        .as_ref()
        .map_or(0, |s| s.max_capacity() - s.capacity())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_request_does_not_fail_its_batch() {
    let dir = TempDir::new().unwrap();
    // The hook holds the writer on the "gate" message, so that everything sent meanwhile
    // queues up and is then applied as one batch.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let hook: CommitHook = Box::new(move |m| {
        if m.body == "gate" {
            let gate = gate.lock().unwrap();
            gate.0.send(()).unwrap();
            gate.1.recv().unwrap();
        }
    });
    let store = Store::open(&db_path(&dir), hook).unwrap();
    let a = room(&store, "a").await;

    let gate_task = tokio::spawn({
        let store = store.clone();
        async move { store.append(a, UserId(1), "alice", 0, "gate").await }
    });
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();

    let s = store.clone();
    let dup1 = tokio::spawn(async move { s.create_room("Dup", UserId(1)).await });
    let s = store.clone();
    let dup2 = tokio::spawn(async move { s.create_room("dUP", UserId(1)).await });
    let s = store.clone();
    let taken = tokio::spawn(async move { s.create_room("A", UserId(1)).await });
    let s = store.clone();
    let user1 = tokio::spawn(async move { s.create_user("carol", "phc".into()).await });
    let s = store.clone();
    let user2 = tokio::spawn(async move { s.create_user("Carol", "phc".into()).await });
    let s = store.clone();
    let missing =
        tokio::spawn(async move { s.append(ConversationId(999), UserId(1), "x", 1, "x").await });
    let s = store.clone();
    let fine = tokio::spawn(async move { s.append(a, UserId(1), "alice", 2, "fine").await });
    let s = store.clone();
    let other = tokio::spawn(async move { s.create_room("other", UserId(1)).await });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queued(&store) < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests did not queue"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    release_tx.send(()).unwrap();

    assert_eq!(gate_task.await.unwrap().unwrap().message.seq, 1);
    let dups = [dup1.await.unwrap(), dup2.await.unwrap()];
    assert_eq!(dups.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(dups.iter().any(|r| matches!(r, Err(StoreError::NameTaken))));
    assert!(matches!(taken.await.unwrap(), Err(StoreError::NameTaken)));
    let users = [user1.await.unwrap(), user2.await.unwrap()];
    assert_eq!(users.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        users
            .iter()
            .any(|r| matches!(r, Err(StoreError::NameTaken)))
    );
    assert!(matches!(missing.await.unwrap(), Err(StoreError::NotFound)));
    assert_eq!(fine.await.unwrap().unwrap().message.seq, 2);
    let other = other.await.unwrap().unwrap();

    assert_eq!(store.room(other.id).unwrap(), Some(other));
    assert_eq!(store.rooms().unwrap().len(), 3);
    assert!(store.user_by_name("CAROL").unwrap().is_some());
    assert_eq!(store.head(a).unwrap(), 2);
}

#[tokio::test]
async fn a_panicking_hook_does_not_stop_the_writer() {
    let dir = TempDir::new().unwrap();
    let hook: CommitHook = Box::new(|m| assert_ne!(m.body, "boom", "hook panics on purpose"));
    let store = Store::open(&db_path(&dir), hook).unwrap();
    let a = room(&store, "a").await;
    let boom = store
        .append(a, UserId(1), "alice", 1, "boom")
        .await
        .unwrap();
    assert_eq!(boom.message.seq, 1);
    let next = store
        .append(a, UserId(1), "alice", 2, "calm")
        .await
        .unwrap();
    assert_eq!(next.message.seq, 2);
}

#[tokio::test]
async fn close_finishes_writes_then_refuses_them() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let a = room(&store, "a").await;
    let pending: Vec<_> = (0..20u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(a, UserId(1), "alice", i, "m").await })
        })
        .collect();
    tokio::task::yield_now().await;
    tokio::join!(store.close(), store.close());
    for task in pending {
        // Each write either made it before the close or was refused; none is lost in between.
        match task.await.unwrap() {
            Ok(done) => assert_eq!(
                store.messages_after(a, done.message.seq - 1, 1).unwrap(),
                [done.message]
            ),
            Err(e) => assert!(matches!(e, StoreError::Closed)),
        }
    }
    assert!(matches!(
        store.create_room("b", UserId(1)).await,
        Err(StoreError::Closed)
    ));
    // Reads still work.
    assert_eq!(store.rooms().unwrap().len(), 1);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let (store, _) = open(&path);
    store.close().await;
    drop(store);

    let db = Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(META_SCHEMA_VERSION, 99)
        .unwrap();
    txn.commit().unwrap();
    drop(db);

    let (hook, _) = recording_hook();
    match Store::open(&path, hook) {
        Err(StoreError::Schema { found, supported }) => {
            assert_eq!((found, supported), (99, tables::SCHEMA_VERSION));
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}
