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

/// A small page cache: the tests' files are small.
const CACHE: usize = 4 * 1024 * 1024;

/// A hook that records every message it is called with.
fn recording_hook() -> (CommitHook, Seen) {
    let seen = Seen::default();
    let sink = Arc::clone(&seen);
    let hook: CommitHook = Box::new(move |m| sink.lock().unwrap().extend_from_slice(m));
    (hook, seen)
}

fn open(path: &Path) -> (Redb, Seen) {
    let (hook, seen) = recording_hook();
    (Redb::open(path, CACHE, hook).unwrap(), seen)
}

fn db_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("quibble.redb")
}

async fn room(store: &Redb, name: &str) -> ConversationId {
    store.create_room(name, UserId(1)).await.unwrap().id
}

/// Every room, paging through the list two at a time.
async fn all_rooms(store: &Redb) -> Vec<Room> {
    let mut rooms = Vec::new();
    let mut after = None;
    loop {
        let page = store.rooms_page(after, 2).await.unwrap();
        assert!(page.rooms.len() <= 2);
        rooms.extend(page.rooms.into_iter().map(|entry| entry.room));
        match page.next {
            Some(next) => after = Some(next),
            None => return rooms,
        }
    }
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn users_are_unique_case_insensitively_and_all_start_as_users() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));

    let alice = store.create_user("Alice", "phc-a".into()).await.unwrap();
    assert_eq!(alice.id, UserId(1));
    assert_eq!(alice.username, "Alice");
    assert_eq!(alice.password_phc, "phc-a");
    assert_eq!(
        alice.role,
        Role::User,
        "not even the first account is an admin"
    );
    assert!(alice.created_at_ms > 0);
    assert!(!store.has_admin().await.unwrap());

    assert!(matches!(
        store.create_user("aLICE", "phc-x".into()).await,
        Err(StoreError::NameTaken)
    ));

    let bob = store.create_user("bob", "phc-b".into()).await.unwrap();
    assert_eq!(bob.role, Role::User);
    assert_ne!(bob.id, alice.id);

    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_name("ALICE").await.unwrap(), Some(alice));
    assert_eq!(store.user_by_name("BoB").await.unwrap(), Some(bob));
    assert_eq!(store.user_by_name("carol").await.unwrap(), None);
    assert_eq!(store.user(UserId(999)).await.unwrap(), None);
}

#[tokio::test]
async fn sessions_expire_and_can_be_deleted() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let alice = store.create_user("alice", "phc".into()).await.unwrap();
    let token = hash_token("token-1");

    store.create_session(token, alice.id, 1_000).await.unwrap();
    assert_eq!(
        store.session_user(&token, 999).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.session_user(&token, 1_000).await.unwrap(), None);
    assert_eq!(
        store.session_user(&hash_token("other"), 0).await.unwrap(),
        None
    );

    assert!(store.delete_session(token).await.unwrap());
    assert_eq!(store.session_user(&token, 0).await.unwrap(), None);
    assert!(!store.delete_session(token).await.unwrap());
}

#[tokio::test]
async fn rooms_have_unique_names_and_list_in_creation_order() {
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

    let names: Vec<_> = all_rooms(&store)
        .await
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["General", "beta", "Alpha"]);
    assert_eq!(store.room(general.id).await.unwrap(), Some(general));
    assert_eq!(store.room(ConversationId(999)).await.unwrap(), None);
}

#[tokio::test]
async fn append_assigns_seqs_per_conversation() {
    let dir = TempDir::new().unwrap();
    let (store, seen) = open(&db_path(&dir));
    let a = room(&store, "a").await;
    let b = room(&store, "b").await;
    assert_eq!(store.head(a).await.unwrap(), 0);

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
    assert_eq!(store.head(a).await.unwrap(), 3);
    assert_eq!(store.head(b).await.unwrap(), 1);
    let in_a = store.messages_after(a, 0, 100).await.unwrap();
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
    assert_eq!(store.head(a).await.unwrap(), 1);
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
        seqs(&store.messages_after(a, 0, 10).await.unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_after(a, 20, 10).await.unwrap()),
        [21, 22, 23, 24, 25]
    );
    assert!(store.messages_after(a, 25, 10).await.unwrap().is_empty());
    assert!(
        store
            .messages_after(a, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.messages_after(a, 0, 0).await.unwrap().is_empty());

    assert_eq!(
        seqs(&store.messages_before(a, 26, 10).await.unwrap()),
        (16..=25).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_before(a, u64::MAX, 3).await.unwrap()),
        [23, 24, 25]
    );
    assert_eq!(
        seqs(&store.messages_before(a, 16, 10).await.unwrap()),
        (6..=15).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_before(a, 6, 10).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert!(store.messages_before(a, 1, 10).await.unwrap().is_empty());
    assert!(store.messages_before(a, 0, 10).await.unwrap().is_empty());
    assert!(store.messages_before(a, 10, 0).await.unwrap().is_empty());

    let all_a = store.messages_after(a, 0, 1000).await.unwrap();
    assert!(
        all_a
            .iter()
            .all(|m| m.conversation == a && m.body == "in a")
    );
    assert_eq!(
        store
            .messages_before(ConversationId(999), 10, 10)
            .await
            .unwrap(),
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
    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(
        store.user_by_name("ALICE").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.session_user(&token, 0).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(all_rooms(&store).await, std::slice::from_ref(&general));
    assert_eq!(store.head(general.id).await.unwrap(), 1);
    assert_eq!(
        store.messages_after(general.id, 0, 10).await.unwrap(),
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
    assert_eq!(store.head(a).await.unwrap(), 200);
}

/// How many requests wait in the writer's queue.
fn queued(store: &Redb) -> usize {
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
    // The hook holds the writer on the "gate" message: with nothing else queued when it
    // commits, the writer runs the hook itself, so everything sent meanwhile queues up and is
    // then applied as one batch.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let hook: CommitHook = Box::new(move |batch| {
        if batch.iter().any(|m| m.body == "gate") {
            let gate = gate.lock().unwrap();
            gate.0.send(()).unwrap();
            gate.1.recv().unwrap();
        }
    });
    let store = Redb::open(&db_path(&dir), CACHE, hook).unwrap();
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

    assert_eq!(store.room(other.id).await.unwrap(), Some(other));
    assert_eq!(all_rooms(&store).await.len(), 3);
    assert!(store.user_by_name("CAROL").await.unwrap().is_some());
    assert_eq!(store.head(a).await.unwrap(), 2);
}

#[tokio::test]
async fn a_panicking_hook_does_not_stop_the_writer() {
    let dir = TempDir::new().unwrap();
    let hook: CommitHook = Box::new(|batch| {
        assert!(
            batch.iter().all(|m| m.body != "boom"),
            "hook panics on purpose"
        )
    });
    let store = Redb::open(&db_path(&dir), CACHE, hook).unwrap();
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
                store
                    .messages_after(a, done.message.seq - 1, 1)
                    .await
                    .unwrap(),
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
    assert_eq!(all_rooms(&store).await.len(), 1);
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
    match Redb::open(&path, CACHE, hook) {
        Err(StoreError::Schema { found, supported }) => {
            assert_eq!((found, supported), (99, tables::SCHEMA_VERSION));
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

#[tokio::test]
async fn client_ids_are_de_duplicated_per_conversation() {
    let dir = TempDir::new().unwrap();
    let (store, seen) = open(&db_path(&dir));
    let a = room(&store, "a").await;
    let b = room(&store, "b").await;

    let in_a = store
        .append(a, UserId(1), "alice", 7, "to a")
        .await
        .unwrap();
    // The same client id in another conversation is another message, stored there.
    let in_b = store
        .append(b, UserId(1), "alice", 7, "to b")
        .await
        .unwrap();
    assert!(!in_b.duplicate);
    assert_eq!(
        (in_b.message.conversation, in_b.message.seq),
        (b, 1),
        "stored in b"
    );
    assert_eq!(
        store.messages_after(b, 0, 10).await.unwrap(),
        std::slice::from_ref(&in_b.message)
    );
    // A resend in either conversation returns that conversation's original.
    let again_a = store
        .append(a, UserId(1), "alice", 7, "to a")
        .await
        .unwrap();
    let again_b = store
        .append(b, UserId(1), "alice", 7, "to b")
        .await
        .unwrap();
    assert!(again_a.duplicate && again_b.duplicate);
    assert_eq!(again_a.message, in_a.message);
    assert_eq!(again_b.message, in_b.message);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn look_alike_room_names_are_one_name() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    store.create_room("General", UserId(1)).await.unwrap();
    for alike in [
        "general",
        "Genera\u{217c}",
        "G\u{435}neral",
        "GENERAL\u{200d}",
    ] {
        assert!(
            matches!(
                store.create_room(alike, UserId(2)).await,
                Err(StoreError::NameTaken)
            ),
            "{alike:?}"
        );
    }
    store.create_room("Generals", UserId(2)).await.unwrap();
    assert_eq!(all_rooms(&store).await.len(), 2);
}

#[tokio::test]
async fn the_room_list_pages_with_heads_in_one_read() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(room(&store, &format!("room {i}")).await);
    }
    store
        .append(ids[3], UserId(1), "alice", 1, "x")
        .await
        .unwrap();
    store
        .append(ids[3], UserId(1), "alice", 2, "y")
        .await
        .unwrap();

    let first = store.rooms_page(None, 3).await.unwrap();
    let got: Vec<_> = first.rooms.iter().map(|e| e.room.id).collect();
    assert_eq!(got, ids[..3]);
    assert_eq!(first.next, Some(ids[2]));
    let second = store.rooms_page(first.next, 3).await.unwrap();
    let got: Vec<_> = second
        .rooms
        .iter()
        .map(|e| (e.room.id, e.head_seq))
        .collect();
    assert_eq!(got, [(ids[3], 2), (ids[4], 0)]);
    assert_eq!(second.next, None, "the last page has no next");
    let exact = store.rooms_page(None, 5).await.unwrap();
    assert_eq!((exact.rooms.len(), exact.next), (5, None));
    assert!(
        store
            .rooms_page(Some(ids[4]), 3)
            .await
            .unwrap()
            .rooms
            .is_empty()
    );
}

/// Writes a file the way the version-1 server did: client ids keyed by (author, client id),
/// room names keyed by their lowercase form, and two rooms whose names only look alike.
fn write_v1_file(path: &Path) {
    use super::records::{MessageRecord, RoomRecord, UserRecord, encode};
    use redb::TableDefinition;
    const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
    const USERNAMES: TableDefinition<&str, u64> = TableDefinition::new("usernames");
    const ROOMS: TableDefinition<u64, &[u8]> = TableDefinition::new("rooms");
    const ROOM_NAMES: TableDefinition<&str, u64> = TableDefinition::new("room_names");
    const MESSAGES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("messages");
    const HEADS: TableDefinition<u64, u64> = TableDefinition::new("heads");
    const DEDUPE: TableDefinition<(u64, u64), (u64, u64)> = TableDefinition::new("dedupe");

    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        for (key, value) in [
            (META_SCHEMA_VERSION, 1),
            ("epoch", 42),
            ("next_user_id", 2),
            ("next_conversation_id", 4),
            ("clock_ms", 1_000),
        ] {
            meta.insert(key, value).unwrap();
        }
        let user = encode(&UserRecord {
            username: "alice",
            password_phc: "phc",
            role: Role::Admin,
            created_at_ms: 1,
        })
        .unwrap();
        txn.open_table(USERS)
            .unwrap()
            .insert(1, user.as_slice())
            .unwrap();
        txn.open_table(USERNAMES)
            .unwrap()
            .insert("alice", 1)
            .unwrap();
        let mut rooms = txn.open_table(ROOMS).unwrap();
        let mut names = txn.open_table(ROOM_NAMES).unwrap();
        for (id, name) in [(1, "General"), (2, "Genera\u{217c}"), (3, "random")] {
            let record = encode(&RoomRecord {
                name,
                created_by: 1,
                created_at_ms: 1,
            })
            .unwrap();
            rooms.insert(id, record.as_slice()).unwrap();
            names.insert(name.to_lowercase().as_str(), id).unwrap();
        }
        let mut messages = txn.open_table(MESSAGES).unwrap();
        let mut heads = txn.open_table(HEADS).unwrap();
        let mut dedupe = txn.open_table(DEDUPE).unwrap();
        for (conversation, client_id) in [(1, 7), (3, 8)] {
            let record = encode(&MessageRecord {
                author: 1,
                author_name: "alice",
                client_id,
                sent_at_ms: 1,
                body: "before the upgrade",
            })
            .unwrap();
            messages
                .insert((conversation, 1), record.as_slice())
                .unwrap();
            heads.insert(conversation, 1).unwrap();
            dedupe.insert((1, client_id), (conversation, 1)).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_version_1_file_is_migrated_at_open() {
    use redb::TableHandle;
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    write_v1_file(&path);

    let (store, _) = open(&path);
    assert_eq!(store.epoch(), 42);
    let (general, look_alike, random) = (ConversationId(1), ConversationId(2), ConversationId(3));
    // Client ids: the old entries still de-duplicate in their conversation …
    let resent = store
        .append(general, UserId(1), "alice", 7, "x")
        .await
        .unwrap();
    assert!(resent.duplicate);
    assert_eq!(
        (resent.message.seq, resent.message.body.as_str()),
        (1, "before the upgrade")
    );
    assert!(
        store
            .append(random, UserId(1), "alice", 8, "x")
            .await
            .unwrap()
            .duplicate
    );
    // … and no longer swallow the same id in another conversation.
    let elsewhere = store
        .append(look_alike, UserId(1), "alice", 7, "new")
        .await
        .unwrap();
    assert!(!elsewhere.duplicate);
    assert_eq!(
        (elsewhere.message.conversation, elsewhere.message.seq),
        (look_alike, 1)
    );
    // Room names: the look-alike pair keeps both rooms; the name is the older room's.
    let rooms = all_rooms(&store).await;
    assert_eq!(rooms.len(), 3);
    assert_eq!(rooms[1].name, "Genera\u{217c}");
    for taken in ["general", "Genera\u{217c}", "RANDOM"] {
        assert!(
            matches!(
                store.create_room(taken, UserId(1)).await,
                Err(StoreError::NameTaken)
            ),
            "{taken:?}"
        );
    }
    let fresh = store.create_room("fresh", UserId(1)).await.unwrap();
    assert_eq!(fresh.id, ConversationId(4));
    store.close().await;
    drop(store);

    // The file now says version 2, the old tables are gone, and it reopens as it is.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let version = txn
            .open_table(META)
            .unwrap()
            .get(META_SCHEMA_VERSION)
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(version, tables::SCHEMA_VERSION);
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n == "dedupe" || n == "room_names"),
            "{names:?}"
        );
    }
    let (store, _) = open(&path);
    assert_eq!(all_rooms(&store).await.len(), 4);
    assert!(
        store
            .append(look_alike, UserId(1), "alice", 7, "new")
            .await
            .unwrap()
            .duplicate
    );
}

async fn user(store: &Redb, name: &str) -> UserId {
    store.create_user(name, "phc".into()).await.unwrap().id
}

#[tokio::test]
async fn room_membership_is_durable_and_creating_a_room_joins_it() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let (store, _) = open(&path);
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let lobby = store.create_room("lobby", alice).await.unwrap().id;
    assert!(
        store.is_member(alice, lobby).await.unwrap(),
        "the creator is in"
    );
    assert!(!store.is_member(bob, lobby).await.unwrap());
    assert!(store.join_room(bob, lobby).await.unwrap());
    assert!(!store.join_room(bob, lobby).await.unwrap(), "joining twice");
    let members = |list: Vec<MemberCursors>| list.into_iter().map(|m| m.user).collect::<Vec<_>>();
    assert_eq!(
        members(store.member_cursors(lobby, 10).await.unwrap()),
        vec![alice, bob]
    );
    assert!(matches!(
        store.join_room(bob, ConversationId(99)).await,
        Err(StoreError::NotFound)
    ));
    store.close().await;
    drop(store);

    let (store, _) = open(&path);
    assert_eq!(store.memberships(bob).await.unwrap(), vec![lobby]);
    assert!(store.leave_room(bob, lobby).await.unwrap());
    assert!(!store.leave_room(bob, lobby).await.unwrap());
    assert!(store.memberships(bob).await.unwrap().is_empty());
    assert_eq!(
        members(store.member_cursors(lobby, 10).await.unwrap()),
        vec![alice]
    );
    assert_eq!(
        store.conversation_kind(lobby).await.unwrap(),
        Some(ConversationKind::Room)
    );
    assert_eq!(
        store.conversation_kind(ConversationId(99)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn cursors_only_move_forwards_are_clamped_to_the_head_and_survive_reopening() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let (store, _) = open(&path);
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let lobby = store.create_room("lobby", alice).await.unwrap().id;
    for i in 1..=5 {
        store.append(lobby, alice, "alice", i, "hi").await.unwrap();
    }
    let c = store.advance_cursors(bob, lobby, 3, 2).await.unwrap();
    assert_eq!(
        c,
        Cursors {
            delivered: 3,
            read: 2
        }
    );
    let c = store.advance_cursors(bob, lobby, 1, 1).await.unwrap();
    assert_eq!(
        c,
        Cursors {
            delivered: 3,
            read: 2
        },
        "never backwards"
    );
    let c = store.advance_cursors(bob, lobby, 0, 99).await.unwrap();
    assert_eq!(
        c,
        Cursors {
            delivered: 5,
            read: 5
        },
        "clamped to the head; delivered is at least read"
    );
    assert!(matches!(
        store.advance_cursors(bob, ConversationId(99), 1, 1).await,
        Err(StoreError::NotFound)
    ));
    store.close().await;
    drop(store);
    let (store, _) = open(&path);
    assert_eq!(
        store.cursors(bob, lobby).await.unwrap(),
        Cursors {
            delivered: 5,
            read: 5
        }
    );
    assert_eq!(
        store.cursors(alice, lobby).await.unwrap(),
        Cursors {
            delivered: 5,
            read: 5
        },
        "an author caught up reads their own messages"
    );
}

#[tokio::test]
async fn friend_requests_accept_into_one_dm_per_pair_and_removal_keeps_it() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let (alice, bob, carol) = (
        user(&store, "alice").await,
        user(&store, "bob").await,
        user(&store, "carol").await,
    );
    assert!(matches!(
        store.add_friend(alice, UserId(99)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::Requested
    );
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::AlreadyRequested
    );
    assert_eq!(
        store.friend_state(bob, alice).await.unwrap(),
        Some(FriendState::Incoming)
    );
    assert_eq!(store.dm_between(alice, bob).await.unwrap(), None);
    let Added::Accepted(dm) = store.add_friend(bob, alice).await.unwrap() else {
        panic!("expected acceptance");
    };
    assert_eq!(store.dm_between(bob, alice).await.unwrap(), Some(dm));
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::AlreadyFriends(dm)
    );
    assert_eq!(
        store.conversation_kind(dm).await.unwrap(),
        Some(ConversationKind::Dm(alice, bob))
    );
    assert!(store.is_member(alice, dm).await.unwrap());
    assert!(store.is_member(bob, dm).await.unwrap());
    assert!(!store.is_member(carol, dm).await.unwrap());
    // A DM is a conversation like a room: seqs, history.
    store.append(dm, alice, "alice", 1, "hey").await.unwrap();
    assert_eq!(store.head(dm).await.unwrap(), 1);

    // Carol asks Alice; Alice declines. Alice asks Carol and cancels.
    store.add_friend(carol, alice).await.unwrap();
    let friends = store.friends(alice).await.unwrap();
    assert_eq!(
        friends
            .iter()
            .map(|f| (f.username.as_str(), f.state, f.dm))
            .collect::<Vec<_>>(),
        vec![
            ("bob", FriendState::Friends, Some(dm)),
            ("carol", FriendState::Incoming, None)
        ]
    );
    assert_eq!(
        store.remove_friend(alice, carol).await.unwrap(),
        Removed::Declined
    );
    assert_eq!(store.friend_state(carol, alice).await.unwrap(), None);
    store.add_friend(alice, carol).await.unwrap();
    assert_eq!(
        store.remove_friend(alice, carol).await.unwrap(),
        Removed::Cancelled
    );
    assert_eq!(
        store.remove_friend(alice, carol).await.unwrap(),
        Removed::Nothing
    );

    assert_eq!(
        store.remove_friend(bob, alice).await.unwrap(),
        Removed::Unfriended
    );
    assert_eq!(store.friend_state(alice, bob).await.unwrap(), None);
    assert!(store.is_member(alice, dm).await.unwrap(), "the DM stays");
    assert_eq!(store.messages_after(dm, 0, 10).await.unwrap().len(), 1);
    // Befriending again reuses the DM.
    store.add_friend(alice, bob).await.unwrap();
    assert_eq!(
        store.add_friend(bob, alice).await.unwrap(),
        Added::Accepted(dm)
    );
}

#[tokio::test]
async fn summaries_count_unread_from_the_read_cursor_without_own_messages() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let lobby = store.create_room("lobby", alice).await.unwrap().id;
    let quiet = store.create_room("quiet", bob).await.unwrap().id;
    store.join_room(bob, lobby).await.unwrap();
    for i in 1..=3 {
        store
            .append(lobby, alice, "alice", i, "from alice")
            .await
            .unwrap();
    }
    // Bob writes without having read: his message is not unread for him, alice's are.
    store
        .append(lobby, bob, "bob", 1, "from bob")
        .await
        .unwrap();
    store
        .append(lobby, alice, "alice", 4, &"x".repeat(300))
        .await
        .unwrap();

    let list = store.summaries(bob).await.unwrap();
    assert_eq!(list.len(), 2);
    let lobby_view = &list[0];
    assert_eq!(lobby_view.conversation, lobby, "most recent activity first");
    assert_eq!(lobby_view.title, "lobby");
    assert_eq!(lobby_view.head_seq, 5);
    assert_eq!(lobby_view.unread, 4);
    let last = lobby_view.last.as_ref().unwrap();
    assert_eq!((last.seq, last.author_name.as_str()), (5, "alice"));
    assert_eq!(last.preview.chars().count(), 100);
    assert_eq!(list[1].conversation, quiet);
    assert_eq!((list[1].unread, list[1].last.clone()), (0, None));

    store.advance_cursors(bob, lobby, 5, 2).await.unwrap();
    let view = store.summary(bob, lobby).await.unwrap().unwrap();
    assert_eq!(view.unread, 2, "seqs 3 and 5; 4 is bob's own");
    assert_eq!(
        view.cursors,
        Cursors {
            delivered: 5,
            read: 2
        }
    );
    let alice_view = store.summary(alice, lobby).await.unwrap().unwrap();
    assert_eq!(alice_view.unread, 1, "only bob's message");
    assert_eq!(
        store.summary(alice, quiet).await.unwrap(),
        None,
        "not a member"
    );
}

#[tokio::test]
async fn last_seen_only_moves_forwards() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    store.record_last_seen(alice, 200).await.unwrap();
    store.record_last_seen(alice, 100).await.unwrap();
    assert_eq!(
        store.last_seen(vec![alice, bob]).await.unwrap(),
        vec![(alice, 200)]
    );
}

#[tokio::test]
async fn deleting_leaves_a_tombstone_indexes_it_and_tells_the_hook_once() {
    let dir = TempDir::new().unwrap();
    let (store, seen) = open(&db_path(&dir));
    let lobby = room(&store, "lobby").await;
    for (client_id, body) in [(1, "one"), (2, "two"), (3, "three")] {
        store
            .append(lobby, UserId(1), "alice", client_id, body)
            .await
            .unwrap();
    }
    let done = store.delete_message(lobby, 3, None).await.unwrap();
    assert!(done.changed);
    assert!(done.tombstone.is_deleted());
    assert_eq!(
        (
            done.tombstone.seq,
            done.tombstone.author,
            done.tombstone.client_id
        ),
        (3, UserId(1), 0)
    );
    assert_eq!(seen.lock().unwrap().last(), Some(&done.tombstone));
    let stored = store.messages_after(lobby, 0, 10).await.unwrap();
    assert_eq!(seqs(&stored), [1, 2, 3], "seqs stay contiguous");
    assert_eq!(stored[2], done.tombstone);
    assert_eq!(store.message(lobby, 3).await.unwrap(), Some(done.tombstone));

    // Twice: nothing changes, nothing is published.
    let hooked = seen.lock().unwrap().len();
    assert!(!store.delete_message(lobby, 3, None).await.unwrap().changed);
    assert_eq!(seen.lock().unwrap().len(), hooked);
    assert!(matches!(
        store.delete_message(lobby, 4, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_message(ConversationId(99), 1, None).await,
        Err(StoreError::NotFound)
    ));

    store.delete_message(lobby, 1, None).await.unwrap();
    assert_eq!(
        store.deletions_up_to(lobby, 3, 1000, 10).await.unwrap(),
        [1, 3]
    );
    assert_eq!(
        store.deletions_up_to(lobby, 2, 1000, 10).await.unwrap(),
        [1]
    );
    assert_eq!(store.deletions_up_to(lobby, 3, 1, 10).await.unwrap(), [3]);
    assert_eq!(
        store.deletions_up_to(lobby, 3, 1000, 1).await.unwrap(),
        [3],
        "the nearest to the resume point"
    );
}

/// Whether `needle` occurs in the file at `path`.
fn file_holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_bodies_leave_the_file_while_reads_go_on() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let (store, _) = open(&path);
    let rooms = [room(&store, "a").await, room(&store, "b").await];
    let body = |i: u64| format!("body-{i:05}-{}", "x".repeat(150));
    // Queued all at once, so they share commits; every commit still rewrites leaves.
    let mut pending = Vec::new();
    for i in 1..=1500 {
        let conversation = rooms[usize::from(i % 2 == 0)];
        pending.push(
            store
                .queue_append(conversation, UserId(1), "alice", i, &body(i))
                .await
                .unwrap(),
        );
    }
    for appended in pending {
        appended.await.unwrap();
    }
    // Readers run all along, holding read transactions as the deletions commit.
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, reading) = (store.clone(), Arc::clone(&reading));
            tokio::spawn(async move {
                while reading.load(std::sync::atomic::Ordering::Relaxed) {
                    store.messages_after(rooms[0], 0, 100).await.unwrap();
                }
            })
        })
        .collect();
    let deleted: Vec<u64> = (1..=1500).step_by(97).collect();
    let deletions: Vec<_> = deleted
        .iter()
        .map(|&i| {
            let store = store.clone();
            let conversation = rooms[usize::from(i % 2 == 0)];
            let seq = i.div_ceil(2);
            tokio::spawn(async move { store.delete_message(conversation, seq, None).await })
        })
        .collect();
    for deletion in deletions {
        assert!(deletion.await.unwrap().unwrap().changed);
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    for &i in &deleted {
        assert!(
            !file_holds(&path, &body(i)),
            "body {i} is still in the file"
        );
    }
    assert!(file_holds(&path, &body(2)), "the others are kept");
    store.close().await;
    drop(store);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    assert!(
        meta.get(super::tables::META_SCRUB_OWED).unwrap().is_none(),
        "nothing left owed"
    );
}

#[tokio::test]
async fn an_owed_scrub_is_finished_at_the_next_open() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let secret = "a-body-deleted-before-a-crash-5d1e";
    let (store, _) = open(&path);
    let lobby = room(&store, "lobby").await;
    store
        .append(lobby, UserId(1), "a", 1, secret)
        .await
        .unwrap();
    // Each later append rewrites the leaf, leaving stale copies of the text in free pages.
    for i in 2..=20 {
        store
            .append(lobby, UserId(1), "a", i, &format!("later message {i}"))
            .await
            .unwrap();
    }
    store.close().await;
    drop(store);
    // As if the server died between a deletion's commit and its scrub: the record is the
    // tombstone, the scrub owed, and a scratch table left behind.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut tables = WriteTables::open(&txn).unwrap();
            messages::delete(&mut tables, 1, lobby, 1, None).unwrap();
            let mut scratch = txn.open_table(super::scrub::SCRUB).unwrap();
            scratch.insert(0, [0u8; 10].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    assert!(file_holds(&path, secret), "the text is in a free page");
    let (store, _) = open(&path);
    // Requests are served after the writer's start-up scrub.
    room(&store, "after").await;
    assert!(!file_holds(&path, secret));
    store.close().await;
    drop(store);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    assert!(meta.get(super::tables::META_SCRUB_OWED).unwrap().is_none());
    assert!(
        txn.open_table(super::scrub::SCRUB).is_err(),
        "no scratch table left"
    );
}

#[tokio::test]
async fn blocks_are_listed_capped_and_survive_a_reopen() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let alice = store.create_user("alice", "phc".into()).await.unwrap().id;
    // Signed up concurrently, so they group-commit.
    let mut signups = tokio::task::JoinSet::new();
    for i in 0..=MAX_BLOCKS {
        let store = store.clone();
        signups.spawn(async move { store.create_user(&format!("u{i}"), "phc".into()).await });
    }
    let mut others = Vec::new();
    while let Some(done) = signups.join_next().await {
        others.push(done.unwrap().unwrap());
    }
    others.sort_by_key(|u| u.id);
    let mut blocks = tokio::task::JoinSet::new();
    for user in &others[..MAX_BLOCKS] {
        let (store, id) = (store.clone(), user.id);
        blocks.spawn(async move { store.block(alice, id).await });
    }
    while let Some(done) = blocks.join_next().await {
        assert!(done.unwrap().unwrap().changed);
    }
    let last = others[MAX_BLOCKS].id;
    assert!(matches!(
        store.block(alice, last).await,
        Err(StoreError::TooMany(_))
    ));
    assert!(!store.blocks(alice, last).await.unwrap());
    assert!(matches!(
        store.block(alice, UserId(u64::MAX)).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.unblock(alice, others[0].id).await.unwrap());
    assert!(!store.unblock(alice, others[0].id).await.unwrap());
    assert!(store.block(alice, last).await.unwrap().changed);
    store.close().await;
    drop(store);

    let (store, _) = open(&db_path(&dir));
    let list = store.block_list(alice).await.unwrap();
    assert_eq!(list.len(), MAX_BLOCKS);
    assert_eq!(list[0].username, others[1].username);
    assert!(list.iter().all(|b| b.since_ms > 0));
    assert_eq!(store.blocked_users(alice).await.unwrap().len(), MAX_BLOCKS);
    assert!(store.blocks(alice, last).await.unwrap());
    assert!(!store.blocks(last, alice).await.unwrap(), "one way only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits() {
    let dir = TempDir::new().unwrap();
    let (store, seen) = open(&db_path(&dir));
    let rooms = [room(&store, "one").await, room(&store, "two").await];
    let before = store.commit_counts();
    let appends: Vec<_> = (0..1000u64)
        .map(|n| {
            let store = store.clone();
            let conversation = rooms[(n % 2) as usize];
            tokio::spawn(async move {
                store
                    .append(conversation, UserId(n + 1), "bot", n, "hello")
                    .await
            })
        })
        .collect();
    for append in appends {
        let appended = append.await.unwrap().unwrap();
        assert!(!appended.duplicate);
    }
    let after = store.commit_counts();
    let commits = after.commits - before.commits;
    assert_eq!(after.messages - before.messages, 1000);
    assert_eq!(after.requests - before.requests, 1000);
    // Group commit: appends that queue while a commit is in flight share the next one.
    assert!(
        commits * 10 <= 1000,
        "1000 concurrent appends took {commits} commits"
    );
    // Every message got its own seq, each room's from 1 with no gap, and the hook saw each.
    for conversation in rooms {
        assert_eq!(store.head(conversation).await.unwrap(), 500);
    }
    assert_eq!(seen.lock().unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_appends_in_its_batch_sees_their_heads_and_cursors() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&db_path(&dir));
    let a = room(&store, "a").await;
    let mut pending = Vec::new();
    for n in 1..=300u64 {
        let author = UserId(1 + n % 2);
        pending.push(store.queue_append(a, author, "bot", n, "hi").await.unwrap());
    }
    // Queued after every append, so most likely in the same batch as the last ones: it must
    // see the head they made (it clamps to it) and the authors' own cursors.
    let reader = store
        .advance_cursors(UserId(3), a, 1000, 1000)
        .await
        .unwrap();
    assert_eq!(
        reader,
        Cursors {
            delivered: 300,
            read: 300
        }
    );
    for append in pending {
        append.await.unwrap();
    }
    assert_eq!(store.head(a).await.unwrap(), 300);
    // Each author's cursors moved onto their own message only while it followed their read
    // cursor: user 2 sent seq 1, then user 1 seq 2 (user 2's read cursor stays at 1).
    let own = store.advance_cursors(UserId(2), a, 0, 0).await.unwrap();
    assert_eq!(
        own,
        Cursors {
            delivered: 1,
            read: 1
        }
    );
}
