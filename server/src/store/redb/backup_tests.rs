//! Tests of backups and restores of the embedded store ([`super::backup`],
//! [`super::restore`]): real redb files in temporary directories.

use std::path::{Path, PathBuf};

use quibble_protocol::wire::ConversationId;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableHandle};
use tempfile::TempDir;

use super::backup::{self, BackupError};
use super::scrub::{Reads, SCRUB};
use super::tables::{META, META_SCHEMA_VERSION, META_SCRUB_OWED, SCHEMA_VERSION, WriteTables};
use super::*;

const CACHE: usize = 4 * 1024 * 1024;

fn open(path: &Path) -> Redb {
    Redb::open(path, CACHE, Box::new(|_| {})).unwrap()
}

/// A store with some of everything: users (one an admin), a room with members, a DM, messages
/// (one deleted), a block, a ban, an IP ban, receipts.
async fn filled(path: &Path) -> (Redb, ConversationId, ConversationId) {
    let store = open(path);
    let alice = store.create_user("alice", "phc-a".into()).await.unwrap().id;
    let bob = store.create_user("bob", "phc-b".into()).await.unwrap().id;
    let carol = store.create_user("carol", "phc-c".into()).await.unwrap().id;
    store
        .set_role(Actor::Operator, "alice", Role::Admin)
        .await
        .unwrap();
    let room = store.create_room("lobby", alice).await.unwrap().id;
    store.join_room(bob, room).await.unwrap();
    store.add_friend(alice, bob).await.unwrap();
    let dm = match store.add_friend(bob, alice).await.unwrap() {
        Added::Accepted(dm) => dm,
        other => panic!("expected a DM, got {other:?}"),
    };
    for i in 1..=20 {
        store
            .append(room, alice, "alice", i, &format!("room {i}"))
            .await
            .unwrap();
        store
            .append(dm, bob, "bob", i, &format!("dm {i}"))
            .await
            .unwrap();
    }
    store.delete_message(room, 3, None).await.unwrap();
    store.advance_cursors(bob, room, 10, 5).await.unwrap();
    store.block(carol, bob).await.unwrap();
    store
        .ban_user(Actor::Operator, "carol", "spam", None)
        .await
        .unwrap();
    store
        .add_ip_ban(
            Actor::Operator,
            "198.51.100.0/24".parse().unwrap(),
            "spam",
            None,
        )
        .await
        .unwrap();
    // A rule that keeps everything here (the sweep must not change what the test counts).
    let keep_all = crate::store::retention::Retention {
        max_age_ms: None,
        max_messages: Some(1_000),
    };
    store
        .set_retention(Actor::Operator, room, keep_all)
        .await
        .unwrap();
    (store, room, dm)
}

/// Every table's name and row count (the scrub's scratch table aside).
fn tables_of(path: &Path) -> Vec<(String, u64)> {
    let db = Database::builder().open_read_only(path).unwrap();
    let txn = db.begin_read().unwrap();
    let mut tables: Vec<(String, u64)> = txn
        .list_tables()
        .unwrap()
        .filter(|t| t.name() != SCRUB.name())
        .map(|t| {
            let name = t.name().to_owned();
            let len = txn.open_untyped_table(t).unwrap().len().unwrap();
            (name, len)
        })
        .collect();
    tables.sort();
    tables
}

#[tokio::test]
async fn a_backup_holds_every_table_row_for_row() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("quibble.redb");
    let (store, room, dm) = filled(&path).await;
    let to = dir.path().join("backup.redb");
    let summary = store.backup(to.clone(), false).await.unwrap();
    assert_eq!(
        summary,
        BackupSummary {
            schema_version: SCHEMA_VERSION,
            users: 3,
            conversations: 2,
            messages: 40,
            bytes: std::fs::metadata(&to).unwrap().len(),
        }
    );
    let epoch = store.epoch();
    store.close().await;
    drop(store);

    let source = tables_of(&path);
    assert!(
        source
            .iter()
            .any(|(name, rows)| name == "audit" && *rows > 0)
    );
    assert_eq!(tables_of(&to), source, "same tables, same row counts");
    assert!(
        !std::fs::read(&to)
            .unwrap()
            .windows(6)
            .any(|w| w == b"room 3"),
        "no deleted text in the backup"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&to).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "only the owner reads a backup");

    // The backup opens as the store it was: same epoch, history, accounts and moderation.
    let copy = open(&to);
    assert_eq!(copy.epoch(), epoch);
    let original = open(&path);
    for conversation in [room, dm] {
        assert_eq!(
            copy.messages_after(conversation, 0, 100).await.unwrap(),
            original.messages_after(conversation, 0, 100).await.unwrap()
        );
    }
    let alice = copy.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(alice.role, Role::Admin);
    assert_eq!(
        copy.active_bans(0, 10).await.unwrap().len(),
        original.active_bans(0, 10).await.unwrap().len()
    );
    // Seqs and ids continue where the original's would.
    let next = copy
        .append(room, alice.id, "alice", 99, "after")
        .await
        .unwrap();
    assert_eq!(next.message.seq, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_mid_traffic_holds_everything_acknowledged_before_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("quibble.redb");
    let store = open(&path);
    let alice = store.create_user("alice", "phc".into()).await.unwrap().id;
    let rooms = [
        store.create_room("a", alice).await.unwrap().id,
        store.create_room("b", alice).await.unwrap().id,
    ];
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(ConversationId, u64)>::new()));
    let writers: Vec<_> = rooms
        .iter()
        .map(|&room| {
            let (store, acked) = (store.clone(), std::sync::Arc::clone(&acked));
            tokio::spawn(async move {
                for i in 1..=600u64 {
                    let body = format!("m{i}-{}", "x".repeat(200));
                    let appended = store.append(room, alice, "alice", i, &body).await.unwrap();
                    acked.lock().unwrap().push((room, appended.message.seq));
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = acked.lock().unwrap().clone();
    let to = dir.path().join("mid.redb");
    store.backup(to.clone(), false).await.unwrap();
    let after = acked.lock().unwrap().len();
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(
        after < 1200,
        "the backup ran mid-traffic ({after} acked by its end)"
    );
    store.close().await;
    drop(store);

    let copy = open(&to);
    for room in rooms {
        let held = copy.messages_after(room, 0, 10_000).await.unwrap();
        let seqs: Vec<u64> = held.iter().map(|m| m.seq).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "seqs contiguous from 1");
        assert_eq!(copy.head(room).await.unwrap(), seqs.len() as u64);
        for (acked_room, seq) in &before {
            if *acked_room == room {
                assert!(*seq <= seqs.len() as u64, "acked {seq} before the backup");
            }
        }
    }
}

#[tokio::test]
async fn an_existing_file_is_refused_unless_forced() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("quibble.redb");
    let store = open(&path);
    let to = dir.path().join("b.redb");
    std::fs::write(&to, b"keep me").unwrap();
    assert!(matches!(
        store.backup(to.clone(), false).await,
        Err(BackupError::Exists(p)) if p == to
    ));
    assert_eq!(std::fs::read(&to).unwrap(), b"keep me");
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    std::fs::write(&partial, b"left by a crash").unwrap();
    std::fs::remove_file(&to).unwrap();
    assert!(matches!(
        store.backup(to.clone(), false).await,
        Err(BackupError::PartialExists(p)) if p == partial
    ));
    std::fs::write(&to, b"old").unwrap();
    std::fs::remove_file(&partial).unwrap();
    // --force replaces only an earlier backup, not any file the server's user can write.
    assert!(matches!(
        store.backup(to.clone(), true).await,
        Err(BackupError::ForceNotStore(p)) if p == to
    ));
    assert_eq!(std::fs::read(&to).unwrap(), b"old");
    std::fs::remove_file(&to).unwrap();
    store.backup(to.clone(), false).await.unwrap();
    std::fs::write(&partial, b"left by a crash").unwrap();
    store.backup(to.clone(), true).await.unwrap();
    assert!(!partial.exists());
    assert!(matches!(
        store.backup(path.clone(), true).await,
        Err(BackupError::OntoStore(_))
    ));
    assert_eq!(tables_of(&to), tables_of_open(&store).await);
    store.close().await;
}

/// [`tables_of`] for a store that is open (read through its own handle).
async fn tables_of_open(store: &Redb) -> Vec<(String, u64)> {
    store
        .read(|txn| {
            let mut tables: Vec<(String, u64)> = txn
                .list_tables()?
                .filter(|t| t.name() != SCRUB.name())
                .map(|t| {
                    let name = t.name().to_owned();
                    let len = txn.open_untyped_table(t).and_then(|t| Ok(t.len()?));
                    (name, len.unwrap_or(u64::MAX))
                })
                .collect();
            tables.sort();
            Ok(tables)
        })
        .await
        .unwrap()
}

/// Adding a table to the store without adding it to the backup fails every backup.
#[test]
fn a_table_the_backup_does_not_copy_fails_it() {
    let dir = TempDir::new().unwrap();
    let db = Database::create(dir.path().join("quibble.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut tables = WriteTables::open(&txn).unwrap();
        tables
            .meta
            .insert(META_SCHEMA_VERSION, SCHEMA_VERSION)
            .unwrap();
    }
    txn.commit().unwrap();
    let reads = Reads::default();
    let store = dir.path().join("quibble.redb");
    let to = dir.path().join("ok.redb");
    backup::write(&db, &store, &reads, &to, false).expect("every table of WriteTables is copied");

    const FUTURE: TableDefinition<u64, u64> = TableDefinition::new("future");
    let txn = db.begin_write().unwrap();
    txn.open_table(FUTURE).unwrap().insert(1, 1).unwrap();
    txn.commit().unwrap();
    let to = dir.path().join("refused.redb");
    match backup::write(&db, &store, &reads, &to, false) {
        Err(BackupError::UnknownTable(name)) => assert_eq!(name, "future"),
        other => panic!("expected UnknownTable, got {other:?}"),
    }
    assert!(!to.exists());
    assert!(!PathBuf::from(format!("{}.partial", to.display())).exists());
}

#[tokio::test]
async fn a_deletion_during_a_backup_is_erased_after_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("quibble.redb");
    let (store, room, _) = filled(&path).await;
    let owed = |store: &Redb| {
        let store = store.clone();
        async move {
            store
                .read(|txn| Ok(txn.open_table(META)?.get(META_SCRUB_OWED)?.is_some()))
                .await
                .unwrap()
        }
    };
    assert!(!owed(&store).await);
    {
        let _backup = store.inner.reads.begin_backup();
        assert!(store.delete_message(room, 5, None).await.unwrap().changed);
        assert!(
            owed(&store).await,
            "a backup may hold the old page: still owed"
        );
    }
    assert!(store.delete_message(room, 6, None).await.unwrap().changed);
    assert!(!owed(&store).await, "done once no backup runs");
    store.close().await;
}

#[tokio::test]
async fn a_restore_checks_the_file_and_keeps_the_store_it_replaces() {
    let dir = TempDir::new().unwrap();
    let (store, room, _) = filled(&dir.path().join("source.redb")).await;
    let file = dir.path().join("backup.redb");
    store.backup(file.clone(), false).await.unwrap();
    let old_epoch = store.epoch();
    store.close().await;
    drop(store);

    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let target = data.join("quibble.redb");
    // The data directory's own store, open: refused.
    let running = open(&target);
    running.create_user("zed", "phc".into()).await.unwrap();
    assert!(matches!(
        restore::restore(&file, &target, 1),
        Err(BackupError::ServerRunning(_))
    ));
    running.close().await;
    drop(running);
    let before = std::fs::read(&target).unwrap();

    let restored = restore::restore(&file, &target, 1_700_000_000).unwrap();
    let kept = data.join("quibble.redb.before-restore-1700000000");
    assert_eq!(restored.kept.as_deref(), Some(kept.as_path()));
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        before,
        "the old store is kept"
    );
    assert_eq!(restored.summary.users, 3);
    assert_eq!(restored.summary.messages, 40);
    assert_ne!(
        restored.epoch, old_epoch,
        "a restored store has a new epoch"
    );
    let store = open(&target);
    assert_eq!(store.epoch(), restored.epoch);
    assert_eq!(store.head(room).await.unwrap(), 20);
    assert!(store.user_by_name("zed").await.unwrap().is_none());
    store.close().await;
    drop(store);
    assert!(!data.join("quibble.redb.restoring").exists());
    // Again within the same second: both earlier stores are kept.
    let again = restore::restore(&file, &target, 1_700_000_000).unwrap();
    let second = data.join("quibble.redb.before-restore-1700000000-2");
    assert_eq!(again.kept.as_deref(), Some(second.as_path()));
    assert!(kept.is_file());
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("quibble.redb");
    let refused = |file: &Path| match restore::restore(file, &target, 1) {
        Err(e @ (BackupError::NotAStore { .. } | BackupError::Newer { .. })) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database at all ".repeat(500)).unwrap();
    assert!(refused(&text).contains("is not a Quibble store"));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(refused(&empty).contains("empty"));
    let other = dir.path().join("other.redb");
    {
        const T: TableDefinition<u64, u64> = TableDefinition::new("t");
        let db = Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
    }
    assert!(refused(&other).contains("no Quibble meta table"));
    let newer = dir.path().join("newer.redb");
    {
        let db = Database::create(&newer).unwrap();
        let txn = db.begin_write().unwrap();
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION + 1)
            .unwrap();
        meta.insert(super::tables::META_EPOCH, 7).unwrap();
        drop(meta);
        txn.commit().unwrap();
    }
    assert!(refused(&newer).contains("newer than this server's"));
    // A damaged store: a real one with bytes flipped in its middle.
    let damaged = dir.path().join("damaged.redb");
    {
        let db = Database::create(&damaged).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut tables = WriteTables::open(&txn).unwrap();
            tables
                .meta
                .insert(META_SCHEMA_VERSION, SCHEMA_VERSION)
                .unwrap();
            tables.meta.insert(super::tables::META_EPOCH, 7).unwrap();
            for i in 0..2000u64 {
                tables
                    .messages
                    .insert((1, i), [7u8; 100].as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(&damaged, bytes).unwrap();
    assert!(refused(&damaged).contains("is not a Quibble store"));
    assert!(!target.exists(), "nothing was installed");
    assert!(!dir.path().join("quibble.redb.restoring").exists());
}
