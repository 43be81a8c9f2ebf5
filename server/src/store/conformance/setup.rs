//! Conformance: what a connection reads to start — the welcome view (friends, last seen,
//! summaries, blocks) and a join's view (a check of the conversation's kind first, then the
//! membership, head and a first batch, only when allowed), each agreeing with the single reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use quibble_protocol::wire::UserId;

use crate::store::{ConversationKind, Summary};

use super::harness::{Fixture, Harness, NO_CONVERSATION, befriend, room, seqs, user};

pub(super) async fn join_view_reads_membership_head_and_a_batch_only_when_allowed<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let lobby = room(store, "general", alice).await;
    for i in 0..5 {
        store
            .append(lobby, alice, "alice", i, &format!("m{i}"))
            .await
            .unwrap();
    }
    let allow = |kind: Option<ConversationKind>| kind.ok_or("unknown");
    // Both ways of reading (on the calling task or not) answer the same.
    for recent in [false, true] {
        let view = store
            .join_view(alice, lobby, allow, |head| head - 3, recent, 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.grant, ConversationKind::Room);
        assert!(view.member);
        assert_eq!((view.head, view.from_seq), (5, 2));
        assert_eq!(seqs(&view.batch), [3, 4]);
        assert_eq!(view.batch, store.messages_after(lobby, 2, 2).await.unwrap());
        let bobs = store
            .join_view(bob, lobby, allow, |head| head, recent, 2)
            .await
            .unwrap()
            .unwrap();
        assert!(!bobs.member);
        assert_eq!(bobs.head, 5);
        assert!(bobs.batch.is_empty(), "nothing after the head");
    }

    // A refusal is returned as it is, and nothing of the conversation is read after it.
    let started = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&started);
    let refused = store
        .join_view(
            bob,
            lobby,
            |_| Err::<(), _>("no"),
            move |head| {
                flag.store(true, Ordering::SeqCst);
                head
            },
            true,
            2,
        )
        .await
        .unwrap();
    assert!(matches!(refused, Err("no")));
    assert!(!started.load(Ordering::SeqCst));
    let unknown = store
        .join_view(bob, NO_CONVERSATION, allow, |head| head, false, 2)
        .await
        .unwrap();
    assert!(matches!(unknown, Err("unknown")));

    // A DM's kind names its pair.
    let dm = befriend(store, alice, bob).await;
    let view = store
        .join_view(bob, dm, allow, |head| head, true, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        view.grant,
        ConversationKind::Dm(alice.min(bob), alice.max(bob))
    );
    assert!(view.member);
    assert_eq!((view.head, view.batch.len()), (0, 0));
}

pub(super) async fn welcome_view_matches_the_single_reads<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob, carol, dan) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
        user(store, "dan").await,
    );
    befriend(store, alice, bob).await;
    // Only requested: not a friend yet.
    store.add_friend(alice, carol).await.unwrap();
    store.block(alice, dan).await.unwrap();
    store.record_last_seen(bob, 1234).await.unwrap();
    store.record_last_seen(carol, 99).await.unwrap();
    let lobby = room(store, "general", alice).await;
    store.append(lobby, bob, "bob", 1, "hi").await.unwrap();

    let view = store.welcome_view(alice).await.unwrap();
    let friends: Vec<UserId> = view.friends.iter().map(|f| f.user).collect();
    assert_eq!(friends, [bob]);
    assert_eq!(view.seen, [(bob, 1234)], "friends' last-seen times only");
    let (summaries, blocked) = store.summaries_and_blocks(alice).await.unwrap();
    assert_eq!(view.summaries, summaries);
    let ids = |list: &[Summary]| list.iter().map(|s| s.conversation).collect::<Vec<_>>();
    assert!(ids(&view.summaries).contains(&lobby));
    assert_eq!(view.summaries.len(), 2, "the room and the DM");
    assert_eq!(view.blocked, blocked);
    assert_eq!(view.blocked, [dan]);
}
