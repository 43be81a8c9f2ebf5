//! Per-room retention: the setting is stored per room (not for DMs), listed, audited and
//! durable; a retention step tombstones what the setting no longer keeps, by count and by
//! age, in bounded batches, through the deletion path (the hook hears each tombstone once),
//! with seqs untouched; steps racing each other retain each message once.

use std::collections::HashSet;

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};

use super::harness::{Fixture, Harness, NO_CONVERSATION, befriend, room, seqs, user};
use crate::store::{Actor, Retention, Store, StoreError};

const KEEP_3: Retention = Retention {
    max_age_ms: None,
    max_messages: Some(3),
};

/// Appends `n` messages by `author` to `room`, client ids from `first`.
async fn send(store: &Store, room: ConversationId, author: UserId, first: u64, n: u64) {
    for client_id in first..first + n {
        store
            .append(room, author, "alice", client_id, &format!("m{client_id}"))
            .await
            .unwrap();
    }
}

/// Every message of `room`, ascending.
async fn history(store: &Store, room: ConversationId) -> Vec<ChatMessage> {
    store.messages_after(room, 0, 1000).await.unwrap()
}

/// The seqs of the deleted messages among `messages`.
fn deleted(messages: &[ChatMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.is_deleted())
        .map(|m| m.seq)
        .collect()
}

pub(super) async fn retention_is_stored_per_room_listed_audited_and_durable<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let lobby = room(store, "lobby", alice).await;
    let quiet = room(store, "quiet", alice).await;
    let dm = befriend(store, alice, bob).await;
    assert_eq!(store.retention(lobby).await.unwrap(), Retention::default());
    assert!(store.retention_page(None, 10).await.unwrap().is_empty());

    let week = Retention {
        max_age_ms: Some(7 * 86_400_000),
        max_messages: Some(500),
    };
    store
        .set_retention(Actor::User(alice), lobby, week)
        .await
        .unwrap();
    assert_eq!(store.retention(lobby).await.unwrap(), week);
    assert_eq!(store.retention(quiet).await.unwrap(), Retention::default());
    assert_eq!(
        store.retention_page(None, 10).await.unwrap(),
        [(lobby, week)]
    );
    let listed = store.rooms_page(None, 10).await.unwrap().rooms;
    assert_eq!(
        listed
            .iter()
            .map(|e| (e.room.id, e.retention))
            .collect::<Vec<_>>(),
        [(lobby, week), (quiet, Retention::default())]
    );

    // DMs have none; nor has what does not exist. Refusals change nothing.
    for nothing in [dm, NO_CONVERSATION] {
        assert!(matches!(
            store.set_retention(Actor::Operator, nothing, KEEP_3).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            store.retention(nothing).await.unwrap(),
            Retention::default()
        );
    }

    store
        .set_retention(Actor::Operator, quiet, KEEP_3)
        .await
        .unwrap();
    assert_eq!(
        store.retention_page(None, 10).await.unwrap(),
        [(lobby, week), (quiet, KEEP_3)]
    );
    assert_eq!(
        store.retention_page(Some(lobby), 10).await.unwrap(),
        [(quiet, KEEP_3)]
    );
    assert_eq!(store.retention_page(None, 1).await.unwrap().len(), 1);

    // Each change is audited, with who and to what.
    let audit = store.audit_page(None, 10).await.unwrap().entries;
    let logged: Vec<_> = audit
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.target.clone(),
                e.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        logged,
        [
            (
                "operator",
                "set_retention",
                quiet.0.to_string(),
                Some("max_age_ms=off, max_messages=3".into())
            ),
            (
                "alice",
                "set_retention",
                lobby.0.to_string(),
                Some("max_age_ms=604800000, max_messages=500".into())
            ),
        ]
    );

    // Off again: no longer swept, and a restart keeps all of it.
    store
        .set_retention(Actor::User(alice), lobby, Retention::default())
        .await
        .unwrap();
    assert_eq!(
        store.retention_page(None, 10).await.unwrap(),
        [(quiet, KEEP_3)]
    );
    let t = t.reopen().await;
    assert_eq!(
        t.store.retention(lobby).await.unwrap(),
        Retention::default()
    );
    assert_eq!(t.store.retention(quiet).await.unwrap(), KEEP_3);
}

pub(super) async fn retention_by_count_tombstones_the_oldest_in_batches<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let lobby = room(store, "lobby", alice).await;
    let other = room(store, "other", alice).await;
    send(store, lobby, alice, 1, 10).await;
    send(store, other, alice, 1, 10).await;
    // Deleted before: stays a tombstone, and is not told again.
    store.delete_message(lobby, 2, None).await.unwrap();
    let now = crate::tls::unix_ms(std::time::SystemTime::now());

    // Without retention a step does nothing.
    let none = store.retain(lobby, now, 100).await.unwrap();
    assert!(none.tombstones.is_empty() && !none.more);

    store
        .set_retention(Actor::User(alice), lobby, KEEP_3)
        .await
        .unwrap();
    let told_before = t.hooked.messages().len();
    let first = store.retain(lobby, now, 4).await.unwrap();
    assert_eq!(seqs(&first.tombstones), [1, 3, 4], "at most 4 seqs a step");
    assert!(first.tombstones.iter().all(ChatMessage::is_deleted));
    assert!(first.more);
    assert_eq!(first.head, 10);
    let second = store.retain(lobby, now, 4).await.unwrap();
    assert_eq!(seqs(&second.tombstones), [5, 6, 7]);
    assert!(!second.more);
    let third = store.retain(lobby, now, 4).await.unwrap();
    assert!(third.tombstones.is_empty() && !third.more);

    let stored = history(store, lobby).await;
    assert_eq!(seqs(&stored), (1..=10).collect::<Vec<_>>(), "seqs stay");
    assert_eq!(deleted(&stored), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(stored[9].body, "m10");
    assert_eq!(store.head(lobby).await.unwrap(), 10);
    // The tombstones are what a deletion leaves, and the deletions index has them.
    assert_eq!(
        store.deletions_up_to(lobby, 10, 100, 100).await.unwrap(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    // The hook heard each new tombstone once, and nothing of the other room changed.
    let told: Vec<_> = t.hooked.messages()[told_before..].to_vec();
    assert_eq!(seqs(&told), [1, 3, 4, 5, 6, 7]);
    assert!(
        told.iter()
            .all(|m| m.conversation == lobby && m.is_deleted())
    );
    assert!(deleted(&history(store, other).await).is_empty());

    // New messages push the oldest kept ones out at the next step.
    send(store, lobby, alice, 11, 2).await;
    let more = store.retain(lobby, now, 100).await.unwrap();
    assert_eq!(seqs(&more.tombstones), [8, 9]);
    assert_eq!(deleted(&history(store, lobby).await).len(), 9);

    // Durable across a restart.
    let t = t.reopen().await;
    let stored = history(&t.store, lobby).await;
    assert_eq!(deleted(&stored), (1..=9).collect::<Vec<_>>());
    assert!(
        t.store
            .retain(lobby, now, 100)
            .await
            .unwrap()
            .tombstones
            .is_empty()
    );
}

pub(super) async fn retention_by_age_stops_at_the_first_young_message<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let lobby = room(store, "lobby", alice).await;
    send(store, lobby, alice, 1, 3).await;
    // The next messages are at least 20 ms younger.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    send(store, lobby, alice, 4, 3).await;
    let stored = history(store, lobby).await;
    let (old, young) = (stored[2].sent_at_ms, stored[3].sent_at_ms);
    assert!(young > old, "times rise with seqs");
    let hour = Retention {
        max_age_ms: Some(3_600_000),
        max_messages: None,
    };
    store
        .set_retention(Actor::User(alice), lobby, hour)
        .await
        .unwrap();
    // Nothing is an hour old yet.
    let step = store.retain(lobby, young, 100).await.unwrap();
    assert!(step.tombstones.is_empty());
    // An hour after message 3: 1..=3 are too old, 4.. are not.
    let step = store.retain(lobby, old + 3_600_000, 100).await.unwrap();
    assert_eq!(seqs(&step.tombstones), [1, 2, 3]);
    assert!(!step.more);
    // In steps of 2 once everything is too old.
    let late = stored[5].sent_at_ms + 3_600_000;
    let step = store.retain(lobby, late, 2).await.unwrap();
    assert_eq!((seqs(&step.tombstones), step.more), (vec![4, 5], true));
    let step = store.retain(lobby, late, 2).await.unwrap();
    assert_eq!((seqs(&step.tombstones), step.more), (vec![6], false));
    let stored = history(store, lobby).await;
    assert_eq!(seqs(&stored), [1, 2, 3, 4, 5, 6]);
    assert_eq!(deleted(&stored), [1, 2, 3, 4, 5, 6]);

    // Both rules: whichever retains more wins.
    send(store, lobby, alice, 7, 4).await;
    store
        .set_retention(
            Actor::User(alice),
            lobby,
            Retention {
                max_age_ms: Some(3_600_000),
                max_messages: Some(1),
            },
        )
        .await
        .unwrap();
    let step = store.retain(lobby, late, 100).await.unwrap();
    assert_eq!(seqs(&step.tombstones), [7, 8, 9]);
}

pub(super) async fn racing_retention_steps_tombstone_each_message_once<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let alice = user(&t.store, "alice").await;
    let lobby = room(&t.store, "lobby", alice).await;
    send(&t.store, lobby, alice, 1, 40).await;
    t.store
        .set_retention(Actor::User(alice), lobby, KEEP_3)
        .await
        .unwrap();
    // Two more handles on the same data, as two nodes of a fleet (or two calls on one).
    let now = crate::tls::unix_ms(std::time::SystemTime::now());
    let mut racers = Vec::new();
    for _ in 0..4 {
        let store = t.store.clone();
        racers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let step = store.retain(lobby, now, 5).await.unwrap();
                mine.extend(step.tombstones.iter().map(|m| m.seq));
                if !step.more && step.tombstones.is_empty() {
                    return mine;
                }
            }
        }));
    }
    let mut all = Vec::new();
    for racer in racers {
        all.extend(racer.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=37).collect::<Vec<_>>(), "each retained once");
    let told: Vec<u64> = t
        .hooked
        .messages()
        .iter()
        .filter(|m| m.is_deleted())
        .map(|m| m.seq)
        .collect();
    assert_eq!(told.len(), 37);
    assert_eq!(told.iter().collect::<HashSet<_>>().len(), 37);
    assert_eq!(
        deleted(&history(&t.store, lobby).await),
        (1..=37).collect::<Vec<_>>()
    );
}

pub(super) async fn retained_and_deleted_messages_are_not_unread<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let lobby = room(store, "lobby", alice).await;
    store.join_room(bob, lobby).await.unwrap();
    send(store, lobby, alice, 1, 6).await;
    let unread = |store: &Store| {
        let store = store.clone();
        async move {
            let summary = store.summary(bob, lobby).await.unwrap().unwrap();
            let listed = store.summaries(bob).await.unwrap();
            assert_eq!(listed[0].unread, summary.unread, "both reads agree");
            summary.unread
        }
    };
    assert_eq!(unread(store).await, 6);
    store.delete_message(lobby, 6, None).await.unwrap();
    assert_eq!(unread(store).await, 5);
    store
        .set_retention(Actor::User(alice), lobby, KEEP_3)
        .await
        .unwrap();
    let now = crate::tls::unix_ms(std::time::SystemTime::now());
    assert_eq!(
        seqs(&store.retain(lobby, now, 100).await.unwrap().tombstones),
        [1, 2, 3]
    );
    assert_eq!(unread(store).await, 2, "4 and 5 are left; 6 is deleted");
}
