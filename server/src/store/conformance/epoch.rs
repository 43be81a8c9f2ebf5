//! Conformance: durability across a restart — everything acknowledged is there after a reopen,
//! counters (ids, seqs, the de-duplication index, the clock) carry on, and the epoch that
//! qualifies resume cursors is non-zero, stable across reopening and new per store.

use crate::auth::hash_token;
use crate::store::Role;

use super::harness::{Fixture, Harness, all_rooms, room, user};

pub(super) async fn reopening_keeps_everything<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let epoch = t.store.epoch();
    assert_ne!(epoch, 0);
    let alice = t.store.create_user("alice", "phc".into()).await.unwrap();
    let token = hash_token("t");
    t.store
        .create_session(token, alice.id, u64::MAX)
        .await
        .unwrap();
    let general = t.store.create_room("General", alice.id).await.unwrap();
    let first = t
        .store
        .append(general.id, alice.id, "alice", 1, "before restart")
        .await
        .unwrap();

    let t = t.reopen().await;
    let store = &t.store;
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
    assert_eq!(all_rooms(store).await, std::slice::from_ref(&general));
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
    assert_eq!(
        t.hooked.messages(),
        [next.message],
        "only the new one is told"
    );
    let bob = store.create_user("bob", "phc".into()).await.unwrap();
    assert_eq!(bob.role, Role::User);
    assert_ne!(bob.id, alice.id);
    let random = store.create_room("random", alice.id).await.unwrap();
    assert_ne!(random.id, general.id);
    store.close().await;
}

pub(super) async fn the_epoch_is_stable_across_reopens_and_new_per_store<H: Harness>() {
    let one = Fixture::<H>::new().await;
    let two = Fixture::<H>::new().await;
    let epoch = one.store.epoch();
    assert_ne!(epoch, 0);
    assert_ne!(two.store.epoch(), 0);
    assert_ne!(two.store.epoch(), epoch, "a new store, a new epoch");
    let one = one.reopen().await;
    assert_eq!(one.store.epoch(), epoch);
    let one = one.reopen().await;
    assert_eq!(one.store.epoch(), epoch, "twice");
}

pub(super) async fn timestamps_never_go_backwards_across_a_reopen<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let alice = user(&t.store, "alice").await;
    let lobby = room(&t.store, "lobby", alice).await;
    let mut last = 0;
    for i in 0..20 {
        let sent = t
            .store
            .append(lobby, alice, "alice", i, "x")
            .await
            .unwrap()
            .message
            .sent_at_ms;
        assert!(sent >= last, "never backwards");
        last = sent;
    }
    let t = t.reopen().await;
    let sent = t
        .store
        .append(lobby, alice, "alice", 99, "x")
        .await
        .unwrap()
        .message
        .sent_at_ms;
    assert!(sent >= last, "never backwards across a reopen");
    let room_made = t.store.create_room("later", alice).await.unwrap();
    assert!(room_made.created_at_ms >= last);
}
