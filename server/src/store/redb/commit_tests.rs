//! Tests of how the writer completes its commits: the hook once per commit with the commit's
//! messages, run on the writer itself when nothing else waits, and the stored clock ceiling
//! (see [`super::writer`]). Real redb files in temporary directories. What the hook is told,
//! in what order, whatever the engine, is tested in `store::conformance::commits`.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use quibble_protocol::wire::{ChatMessage, UserId};
use redb::{Database, ReadableDatabase};
use tempfile::TempDir;

use super::tables::{META, META_CLOCK_MS};
use super::*;

const CACHE: usize = 4 * 1024 * 1024;

/// Each hook call: the thread it ran on, and the (conversation, seq) of its messages.
type Calls = Arc<Mutex<Vec<(String, Vec<(u64, u64)>)>>>;

/// A hook that records each call in `calls` and, on a message whose body is "gate", signals
/// the returned receiver and holds its thread until the returned sender is used.
fn gated_hook(calls: &Calls) -> (CommitHook, Receiver<()>, Sender<()>) {
    let (entered_tx, entered_rx) = channel::<()>();
    let (release_tx, release_rx) = channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let calls = Arc::clone(calls);
    let hook: CommitHook = Box::new(move |batch: &[ChatMessage]| {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let seqs = batch.iter().map(|m| (m.conversation.0, m.seq)).collect();
        calls.lock().unwrap().push((thread, seqs));
        if batch.iter().any(|m| m.body == "gate") {
            let gate = gate.lock().unwrap();
            gate.0.send(()).unwrap();
            gate.1.recv().unwrap();
        }
    });
    (hook, entered_rx, release_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_gets_each_commit_once_in_order_on_the_writer_when_nothing_waits() {
    let dir = TempDir::new().unwrap();
    let calls = Calls::default();
    // The hook holds the writer on the "gate" message, so what is sent meanwhile queues up.
    let (hook, entered_rx, release_tx) = gated_hook(&calls);
    let store = Redb::open(&dir.path().join("q.redb"), CACHE, hook).unwrap();
    let mut rooms = Vec::new();
    for name in ["a", "b", "c"] {
        rooms.push(store.create_room(name, UserId(1)).await.unwrap().id);
    }
    let gate_task = tokio::spawn({
        let store = store.clone();
        let room = rooms[0];
        async move { store.append(room, UserId(1), "alice", 1, "gate").await }
    });
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();
    // 3 rooms x 100 messages, queued while the writer is held: one batch.
    let mut pending = Vec::new();
    for i in 0..300u64 {
        let room = rooms[(i % 3) as usize];
        pending.push(
            store
                .queue_append(room, UserId(2), "bob", 10 + i, "x")
                .await
                .unwrap(),
        );
    }
    release_tx.send(()).unwrap();
    gate_task.await.unwrap().unwrap();
    for p in pending {
        p.await.unwrap();
    }

    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.iter().all(|(_, seqs)| !seqs.is_empty()),
        "never called with nothing"
    );
    assert_eq!(calls[0].1, vec![(rooms[0].0, 1)], "the gate alone");
    assert_eq!(
        calls[0].0, "quibble-store-writer",
        "with nothing queued the writer runs the hook itself"
    );
    assert_eq!(
        calls[1].1.len(),
        300,
        "what queued meanwhile is one commit, one call"
    );
    // Every message exactly once, and each room's seqs in order.
    let all: Vec<(u64, u64)> = calls.iter().flat_map(|(_, s)| s.clone()).collect();
    assert_eq!(all.len(), 301);
    for room in &rooms {
        let seqs: Vec<u64> = all
            .iter()
            .filter(|(c, _)| *c == room.0)
            .map(|&(_, seq)| seq)
            .collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "room {} in order, each once", room.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_requests_waiting_the_completer_runs_the_hook_and_order_holds() {
    let dir = TempDir::new().unwrap();
    let calls = Calls::default();
    let (hook, entered_rx, release_tx) = gated_hook(&calls);
    let store = Redb::open(&dir.path().join("q.redb"), CACHE, hook).unwrap();
    let room = store.create_room("a", UserId(1)).await.unwrap().id;
    let gate_task = tokio::spawn({
        let store = store.clone();
        async move { store.append(room, UserId(1), "alice", 1, "gate").await }
    });
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();
    // Bodies of 3 MiB: a batch stops growing past 4 MiB of text, so these are two batches,
    // and when the first commits the second is already waiting.
    let big = "x".repeat(3 << 20);
    let mut pending = Vec::new();
    for i in 0..3u64 {
        pending.push(
            store
                .queue_append(room, UserId(2), "bob", 10 + i, &big)
                .await
                .unwrap(),
        );
    }
    release_tx.send(()).unwrap();
    gate_task.await.unwrap().unwrap();
    for p in pending {
        p.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[1].1, vec![(room.0, 2), (room.0, 3)]);
    assert_eq!(
        calls[1].0, "quibble-store-completer",
        "with a request waiting, the completer runs the hook"
    );
    assert_eq!(calls[2].1, vec![(room.0, 4)], "in commit order");
}

#[tokio::test]
async fn the_stored_clock_ceiling_covers_every_timestamp_across_a_reopen() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("q.redb");
    let store = Redb::open(&path, CACHE, Box::new(|_| {})).unwrap();
    let room = store.create_room("a", UserId(1)).await.unwrap().id;
    let mut last = 0;
    for i in 0..20 {
        let sent = store
            .append(room, UserId(1), "alice", i, "x")
            .await
            .unwrap()
            .message
            .sent_at_ms;
        assert!(sent >= last, "never backwards");
        last = sent;
    }
    store.close().await;
    drop(store);
    let ceiling = {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        meta.get(META_CLOCK_MS).unwrap().unwrap().value()
    };
    assert!(ceiling >= last, "{ceiling} covers {last}");
    let store = Redb::open(&path, CACHE, Box::new(|_| {})).unwrap();
    let sent = store
        .append(room, UserId(1), "alice", 99, "x")
        .await
        .unwrap()
        .message
        .sent_at_ms;
    assert!(sent >= last, "never backwards across a reopen");
}
