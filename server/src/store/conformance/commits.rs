//! Conformance: the write path as callers see it — the commit hook (told each committed
//! message and tombstone once, in order, never with nothing, before the writer's caller hears
//! back, and surviving its own panics), concurrent writers, refusals that fail only their own
//! request, the commit counters, and closing.

use std::collections::HashMap;

use quibble_protocol::wire::ConversationId;

use crate::auth::hash_token;
use crate::store::{Actor, CommitHook, Role, StoreError};

use super::harness::{
    Fixture, Harness, NO_CONVERSATION, NO_USER, all_rooms, befriend, room, seqs, user,
};

pub(super) async fn concurrent_appends_get_every_seq_once_and_the_hook_hears_first<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let alice = user(&t.store, "alice").await;
    let a = room(&t.store, "a", alice).await;

    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let store = t.store.clone();
            let hooked = t.hooked.clone();
            tokio::spawn(async move {
                let done = store
                    .append(a, alice, "alice", i, &format!("m{i}"))
                    .await
                    .unwrap();
                assert!(!done.duplicate);
                // The hook has seen the message before the appender hears back.
                assert!(hooked.told(&done.message));
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
    assert_eq!(seqs(&t.hooked.messages()), (1..=200).collect::<Vec<_>>());
    assert_eq!(t.store.head(a).await.unwrap(), 200);
}

pub(super) async fn the_hook_is_told_each_commit_once_in_order_and_never_empty<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let alice = user(&t.store, "alice").await;
    let mut rooms = Vec::new();
    for name in ["a", "b", "c"] {
        rooms.push(room(&t.store, name, alice).await);
    }
    // Three writers at once, each pipelining 100 messages into its room.
    let mut writers = tokio::task::JoinSet::new();
    for (r, &conversation) in rooms.iter().enumerate() {
        let (store, hooked) = (t.store.clone(), t.hooked.clone());
        writers.spawn(async move {
            let mut pending = Vec::new();
            for n in 0..100u64 {
                let body = format!("{r}:{n}");
                pending.push(
                    store
                        .queue_append(conversation, alice, "alice", n, &body)
                        .await
                        .unwrap(),
                );
            }
            let mut answered = Vec::new();
            for appended in pending {
                let message = appended.await.unwrap().message;
                assert!(hooked.told(&message), "told before the answer");
                answered.push(message);
            }
            answered
        });
    }
    let mut answered = Vec::new();
    while let Some(done) = writers.join_next().await {
        answered.extend(done.unwrap());
    }
    let tombstone = t
        .store
        .delete_message(rooms[1], 50, None)
        .await
        .unwrap()
        .tombstone;

    let calls = t.hooked.calls();
    assert!(
        calls.iter().all(|call| !call.is_empty()),
        "never told nothing"
    );
    let told = t.hooked.messages();
    assert_eq!(told.len(), 301, "each message once, and the tombstone");
    assert_eq!(
        told.last(),
        Some(&tombstone),
        "the deletion after what it deletes"
    );
    let mut per_room: HashMap<ConversationId, Vec<u64>> = HashMap::new();
    for message in &told[..300] {
        assert!(!message.is_deleted());
        per_room
            .entry(message.conversation)
            .or_default()
            .push(message.seq);
    }
    for conversation in &rooms {
        assert_eq!(
            per_room[conversation],
            (1..=100).collect::<Vec<_>>(),
            "in seq order per conversation"
        );
    }
    for message in &answered {
        assert_eq!(told.iter().filter(|m| *m == message).count(), 1);
    }
    // What was told is what is stored.
    for conversation in &rooms {
        let stored = t.store.messages_after(*conversation, 0, 200).await.unwrap();
        let told_here: Vec<_> = told[..300]
            .iter()
            .filter(|m| m.conversation == *conversation)
            .map(|m| {
                if (m.conversation, m.seq) == (tombstone.conversation, tombstone.seq) {
                    tombstone.clone()
                } else {
                    m.clone()
                }
            })
            .collect();
        assert_eq!(stored, told_here);
    }
}

pub(super) async fn writes_without_messages_do_not_call_the_hook<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (ann, bob, cy) = (
        user(store, "ann").await,
        user(store, "bob").await,
        user(store, "cy").await,
    );
    let lobby = room(store, "lobby", ann).await;
    store.join_room(bob, lobby).await.unwrap();
    store.leave_room(bob, lobby).await.unwrap();
    let dm = befriend(store, ann, bob).await;
    store.advance_cursors(ann, dm, 0, 0).await.unwrap();
    store.block(cy, bob).await.unwrap();
    store
        .create_session(hash_token("s"), cy, u64::MAX)
        .await
        .unwrap();
    store.record_last_seen(cy, 5).await.unwrap();
    store
        .set_role(Actor::Operator, "ann", Role::Admin)
        .await
        .unwrap();
    store
        .ban_user(Actor::User(ann), "cy", "x", None)
        .await
        .unwrap();
    store
        .add_ip_ban(Actor::Operator, "192.0.2.0/24".parse().unwrap(), "x", None)
        .await
        .unwrap();
    assert!(t.hooked.calls().is_empty(), "{:?}", t.hooked.calls());
}

pub(super) async fn refused_requests_do_not_fail_the_requests_around_them<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let (ann, bob) = (user(&t.store, "ann").await, user(&t.store, "bob").await);
    t.store
        .set_role(Actor::Operator, "ann", Role::Admin)
        .await
        .unwrap();
    let a = room(&t.store, "a", ann).await;
    let store = &t.store;
    // All at once, so whatever an engine batches, refusals and successes share it.
    let (dup1, dup2, taken, user1, user2, missing, fine, other, admin, stranger, gone) = tokio::join!(
        store.create_room("Dup", ann),
        store.create_room("dUP", bob),
        store.create_room("A", bob),
        store.create_user("carol", "phc".into()),
        store.create_user("Carol", "phc".into()),
        store.append(NO_CONVERSATION, ann, "ann", 1, "x"),
        store.append(a, ann, "ann", 2, "fine"),
        store.create_room("other", bob),
        store.ban_user(Actor::Operator, "ann", "x", None),
        store.add_friend(bob, NO_USER),
        store.delete_message(a, 99, None),
    );
    let dups = [dup1, dup2];
    assert_eq!(dups.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(dups.iter().any(|r| matches!(r, Err(StoreError::NameTaken))));
    assert!(matches!(taken, Err(StoreError::NameTaken)));
    let users = [user1, user2];
    assert_eq!(users.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        users
            .iter()
            .any(|r| matches!(r, Err(StoreError::NameTaken)))
    );
    assert!(matches!(missing, Err(StoreError::NotFound)));
    assert_eq!(fine.unwrap().message.seq, 1);
    assert!(matches!(admin, Err(StoreError::TargetIsAdmin)));
    assert!(matches!(stranger, Err(StoreError::NotFound)));
    assert!(matches!(gone, Err(StoreError::NotFound)));
    let other = other.unwrap();

    assert_eq!(store.room(other.id).await.unwrap(), Some(other));
    assert_eq!(all_rooms(store).await.len(), 3);
    assert!(store.user_by_name("CAROL").await.unwrap().is_some());
    assert_eq!(store.head(a).await.unwrap(), 1);
    assert!(store.ban_of(ann, 0).await.unwrap().is_none());
    assert_eq!(t.hooked.messages().len(), 1);
}

pub(super) async fn commit_counts_count_requests_and_appended_messages<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let before = store.commit_counts();
    for i in 0..20u64 {
        store.append(a, alice, "alice", i, "m").await.unwrap();
    }
    store.append(a, alice, "alice", 3, "m").await.unwrap();
    store.delete_message(a, 1, None).await.unwrap();
    assert!(
        store
            .append(NO_CONVERSATION, alice, "alice", 1, "m")
            .await
            .is_err()
    );
    let after = store.commit_counts();
    assert_eq!(
        after.messages - before.messages,
        20,
        "neither the duplicate, the deletion nor the refusal is a new message"
    );
    assert_eq!(
        after.requests - before.requests,
        23,
        "refused ones included"
    );
    let commits = after.commits - before.commits;
    assert!((1..=23).contains(&commits), "{commits} commits");
}

pub(super) async fn a_panicking_hook_does_not_stop_the_store<H: Harness>() {
    let hook: CommitHook = Box::new(|batch| {
        assert!(
            batch.iter().all(|m| m.body != "boom"),
            "hook panics on purpose"
        )
    });
    let t = Fixture::<H>::with_hook(hook).await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let boom = store.append(a, alice, "alice", 1, "boom").await.unwrap();
    assert_eq!(boom.message.seq, 1);
    let next = store.append(a, alice, "alice", 2, "calm").await.unwrap();
    assert_eq!(next.message.seq, 2);
    assert_eq!(
        store.messages_after(a, 0, 10).await.unwrap(),
        [boom.message, next.message]
    );
}

pub(super) async fn close_finishes_writes_then_refuses_them<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let pending: Vec<_> = (0..20u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(a, alice, "alice", i, "m").await })
        })
        .collect();
    tokio::task::yield_now().await;
    tokio::join!(store.close(), store.close());
    let mut kept = 0;
    for task in pending {
        // Each write either made it before the close or was refused; none is lost in between.
        match task.await.unwrap() {
            Ok(done) => {
                kept += 1;
                assert_eq!(
                    store
                        .messages_after(a, done.message.seq - 1, 1)
                        .await
                        .unwrap(),
                    [done.message]
                );
            }
            Err(e) => assert!(matches!(e, StoreError::Closed)),
        }
    }
    assert_eq!(
        store.head(a).await.unwrap(),
        kept,
        "nothing else was stored"
    );
    assert!(matches!(
        store.create_room("b", alice).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.queue_append(a, alice, "alice", 99, "late").await,
        Err(StoreError::Closed)
    ));
    // Reads still work.
    assert_eq!(all_rooms(store).await.len(), 1);
}
