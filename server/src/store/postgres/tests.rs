//! What only the PostgreSQL engine must prove beyond the conformance suite: several nodes on
//! one database. Each test connects two handles (two "nodes") to a fresh database on a
//! throwaway PostgreSQL server (test-support) and checks that the database, not either node,
//! keeps seqs gap-free, client ids unique and names unique.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use quibble_protocol::wire::{ChatMessage, ConversationId};
use quibble_test_support::postgres::Postgres as Server;

use crate::store::{CommitHook, Store, StoreError};

type Seen = Arc<Mutex<Vec<ChatMessage>>>;

async fn node(url: &str) -> (Store, Seen) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let hook: CommitHook =
        Box::new(move |messages| sink.lock().unwrap().extend_from_slice(messages));
    (Store::connect_postgres(url, hook).await.unwrap(), seen)
}

fn database() -> String {
    Server::shared().fresh_database()
}

#[tokio::test]
async fn nodes_share_the_epoch_and_migrate_once() {
    let url = database();
    let ((a, _), (b, _)) = tokio::join!(node(&url), node(&url));
    assert_ne!(a.epoch(), 0);
    assert_eq!(a.epoch(), b.epoch());
    a.close().await;
    let (again, _) = node(&url).await;
    assert_eq!(again.epoch(), b.epoch(), "reconnecting keeps the epoch");
}

#[tokio::test]
async fn names_are_unique_across_nodes() {
    let url = database();
    let ((a, _), (b, _)) = tokio::join!(node(&url), node(&url));
    let (first, second) = tokio::join!(
        a.create_user("Alice", "x".into()),
        b.create_user("alice", "y".into())
    );
    let taken = [&first, &second]
        .iter()
        .filter(|r| matches!(r, Err(StoreError::NameTaken)))
        .count();
    assert_eq!(
        taken, 1,
        "exactly one sign-up of the name wins: {first:?} {second:?}"
    );
    let owner = first.or(second).unwrap();
    let (r1, r2) = tokio::join!(
        a.create_room("Lobby", owner.id),
        b.create_room("lobby", owner.id)
    );
    assert_eq!(
        [&r1, &r2]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::NameTaken)))
            .count(),
        1
    );
}

#[tokio::test]
async fn concurrent_appends_on_two_nodes_get_gap_free_seqs_and_one_copy_per_client_id() {
    let url = database();
    let ((a, seen_a), (b, seen_b)) = tokio::join!(node(&url), node(&url));
    let alice = a.create_user("alice", "x".into()).await.unwrap();
    let room = a.create_room("room", alice.id).await.unwrap().id;
    const EACH: u64 = 200;
    // Client ids 0..EACH go to both nodes at once (a client retrying on another node);
    // EACH..2*EACH only to one.
    let send = |store: Store, from: u64| async move {
        let mut pending = Vec::new();
        for id in from..from + EACH {
            pending.push(
                store
                    .queue_append(room, alice.id, "alice", id, &format!("m{id}"))
                    .await
                    .unwrap(),
            );
        }
        let mut out = Vec::new();
        for p in pending {
            out.push(p.await.unwrap());
        }
        out
    };
    let (on_a, on_b, on_b_too) = tokio::join!(
        send(a.clone(), 0),
        send(b.clone(), 0),
        send(b.clone(), EACH)
    );
    let head = a.head(room).await.unwrap();
    assert_eq!(head, 2 * EACH, "one message per client id");
    let history = a.messages_after(room, 0, 10_000).await.unwrap();
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=2 * EACH).collect::<Vec<_>>(),
        "gap-free, ascending"
    );
    let ids: BTreeSet<u64> = history.iter().map(|m| m.client_id).collect();
    assert_eq!(ids.len() as u64, 2 * EACH);
    // Both nodes were answered with the same stored message for a shared client id.
    for (x, y) in on_a.iter().zip(&on_b) {
        assert_eq!(x.message, y.message);
        assert!(
            x.duplicate != y.duplicate,
            "one stored it, the other got it back"
        );
    }
    assert!(on_b_too.iter().all(|a| !a.duplicate));
    // Each node's hook saw exactly what it stored, in seq order; together, everything once.
    let mut all: Vec<u64> = Vec::new();
    for seen in [&seen_a, &seen_b] {
        let seen = seen.lock().unwrap();
        let seqs: Vec<u64> = seen.iter().map(|m| m.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "in seq order: {seqs:?}"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2 * EACH).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_append_to_a_missing_conversation_is_refused_alone() {
    let url = database();
    let (a, _) = node(&url).await;
    let alice = a.create_user("alice", "x".into()).await.unwrap();
    let room = a.create_room("room", alice.id).await.unwrap().id;
    let missing = ConversationId(room.0 + 1000);
    let good = a
        .queue_append(room, alice.id, "alice", 1, "hi")
        .await
        .unwrap();
    let bad = a
        .queue_append(missing, alice.id, "alice", 2, "hi")
        .await
        .unwrap();
    let good2 = a
        .queue_append(room, alice.id, "alice", 3, "again")
        .await
        .unwrap();
    assert!(matches!(bad.await, Err(StoreError::NotFound)));
    assert_eq!(good.await.unwrap().message.seq, 1);
    assert_eq!(good2.await.unwrap().message.seq, 2);
}

#[tokio::test]
async fn one_user_joining_a_room_on_two_nodes_at_once_joins_once() {
    let url = database();
    let ((a, _), (b, _)) = tokio::join!(node(&url), node(&url));
    let owner = a.create_user("owner", "x".into()).await.unwrap();
    let bob = a.create_user("bob", "x".into()).await.unwrap();
    for i in 0..20 {
        let room = a.create_room(&format!("r{i}"), owner.id).await.unwrap().id;
        let (one, two) = tokio::join!(a.join_room(bob.id, room), b.join_room(bob.id, room));
        let mut joined = [one.unwrap(), two.unwrap()];
        joined.sort_unstable();
        assert_eq!(joined, [false, true], "one join, one already a member");
    }
    assert_eq!(a.memberships(bob.id).await.unwrap().len(), 20);
}

#[tokio::test]
async fn a_name_with_a_nul_is_nobody_not_a_database_error() {
    let url = database();
    let (a, _) = node(&url).await;
    a.create_user("alice", "x".into()).await.unwrap();
    assert_eq!(a.user_by_name("ali\0ce").await.unwrap(), None);
    assert!(matches!(
        a.ban_user(crate::store::Actor::Operator, "ali\0ce", "r", None)
            .await,
        Err(StoreError::NotFound)
    ));
}
