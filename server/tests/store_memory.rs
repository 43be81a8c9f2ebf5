//! The store's page cache is bounded by the `store_cache_mb` setting: a real server that opens
//! and reads a store file many times larger than its cache keeps its memory near the cache
//! size, not near the file size. (With redb's own default, a 1 GiB cache, this server held
//! ~90 MiB right after opening the ~70 MiB file of this test.)

mod support;

use quibble_protocol::{ConversationId, Cursor, ServerFrame, UserId};
use quibble_server::store::Store;
use support::{RawPeer, TestServer};

/// Messages written, and the size of each body: 9,000 × 4 KiB ≈ 36 MiB of data.
const MESSAGES: u64 = 9_000;
const BODY: usize = 4096;
/// The cache the server is given; the bound on its RSS after opening the store (measured
/// ~42 MiB for the debug server, code and the password hasher's arena included: it grows with
/// the binary); and the bound on what reading everything adds (measured ~6.5 MiB: the cache
/// and the replay's buffers, where an unbounded cache would add the file's 70 MiB).
const CACHE_MB: usize = 4;
const RSS_BOUND_KB: u64 = 56 * 1024;
const READ_GROWTH_BOUND_KB: u64 = 16 * 1024;

fn rss_kb(pid: u32) -> u64 {
    support::proc_status(pid).rss / 1024
}

/// Fills a store file through the store API directly (fast: pipelined, group-committed).
async fn fill(data_dir: &std::path::Path) -> ConversationId {
    std::fs::create_dir_all(data_dir).unwrap();
    let store = Store::open(
        &data_dir.join("quibble.redb"),
        CACHE_MB * 1024 * 1024,
        Box::new(|_| {}),
    )
    .unwrap();
    let room = store.create_room("big", UserId(1)).await.unwrap().id;
    let body = "x".repeat(BODY);
    let mut pending = Vec::new();
    for client_id in 0..MESSAGES {
        pending.push(
            store
                .queue_append(room, UserId(1), "filler", client_id, &body)
                .await
                .unwrap(),
        );
    }
    for done in pending {
        done.await.unwrap();
    }
    store.close().await;
    room
}

#[tokio::test]
async fn reading_a_store_larger_than_the_cache_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let room = fill(&data).await;
    let file_mb = std::fs::metadata(data.join("quibble.redb")).unwrap().len() >> 20;
    assert!(file_mb >= 36, "the store file is {file_mb} MiB");

    let server = TestServer::start_with_config(&data, &format!("store_cache_mb = {CACHE_MB}\n"));
    let pid = server.pid();
    let token = server.api().signup("reader").await;
    let mut peer = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome { epoch, .. } = peer.hello(&token).await else {
        panic!("no Welcome");
    };
    let opened = rss_kb(pid);

    // Resuming from seq 0 makes the server read every message in the file.
    let (_, replayed) = peer.join(1, room, Some(Cursor { epoch, seq: 0 })).await;
    assert_eq!(replayed.len() as u64, MESSAGES);
    let read = rss_kb(pid);
    eprintln!(
        "file {file_mb} MiB, cache {CACHE_MB} MiB: RSS {opened} kB after opening, {read} kB \
         after reading everything"
    );
    for (when, rss) in [("opening", opened), ("reading", read)] {
        assert!(
            rss < RSS_BOUND_KB,
            "after {when} a {file_mb} MiB store the server's RSS is {rss} kB (bound \
             {RSS_BOUND_KB} kB with a {CACHE_MB} MiB cache)"
        );
    }
    let growth = read.saturating_sub(opened);
    assert!(
        growth < READ_GROWTH_BOUND_KB,
        "reading a {file_mb} MiB store grew the server's RSS by {growth} kB (bound \
         {READ_GROWTH_BOUND_KB} kB with a {CACHE_MB} MiB cache)"
    );
    peer.close().await;
}
