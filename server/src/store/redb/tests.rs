//! The redb engine's own tests, of what only this engine has: its writer's queue and batches,
//! the schema version, the migration of version-1 files (and of files from before retention),
//! and the scrub of deleted bodies from the file; real redb files in temporary directories. Everything the store promises
//! whatever the engine is tested once for all engines in `store::conformance`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use redb::Database;
use tempfile::TempDir;

use super::tables::{META, META_SCHEMA_VERSION};
use super::*;

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

#[tokio::test]
async fn a_file_from_before_retention_gets_its_table_at_open() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let (store, _) = open(&path);
    let lobby = room(&store, "lobby").await;
    store
        .append(lobby, UserId(1), "a", 1, "kept")
        .await
        .unwrap();
    store.close().await;
    drop(store);
    // As a server before retention left it: no such table.
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(super::tables::RETENTION).unwrap());
        txn.commit().unwrap();
    }
    let (store, _) = open(&path);
    assert_eq!(
        store.retention(lobby).await.unwrap(),
        crate::store::Retention::default()
    );
    assert!(store.retention_page(None, 10).await.unwrap().is_empty());
    assert_eq!(store.rooms_page(None, 10).await.unwrap().rooms.len(), 1);
    let keep = crate::store::Retention {
        max_age_ms: None,
        max_messages: Some(1),
    };
    store
        .set_retention(Actor::Operator, lobby, keep)
        .await
        .unwrap();
    store
        .append(lobby, UserId(1), "a", 2, "newer")
        .await
        .unwrap();
    let step = store.retain(lobby, 0, 10).await.unwrap();
    assert_eq!(step.tombstones.len(), 1);
    assert_eq!(store.retention(lobby).await.unwrap(), keep);
}
