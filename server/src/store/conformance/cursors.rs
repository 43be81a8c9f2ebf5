//! Conformance: receipts — each member's delivered and read cursors, which only move forwards,
//! are clamped to the head, follow an author onto their own message, and are listed per
//! conversation with the members' names.

use crate::store::{Cursors, StoreError};

use super::harness::{Fixture, Harness, NO_CONVERSATION, room, user};

const fn at(delivered: u64, read: u64) -> Cursors {
    Cursors { delivered, read }
}

pub(super) async fn cursors_only_move_forwards_are_clamped_to_the_head_and_survive_reopening<
    H: Harness,
>() {
    let t = Fixture::<H>::new().await;
    let (alice, bob) = (user(&t.store, "alice").await, user(&t.store, "bob").await);
    let lobby = t.store.create_room("lobby", alice).await.unwrap().id;
    {
        let store = &t.store;
        store.join_room(bob, lobby).await.unwrap();
        assert_eq!(
            store.cursors(bob, lobby).await.unwrap(),
            at(0, 0),
            "never reported"
        );
        for i in 1..=5 {
            store.append(lobby, alice, "alice", i, "hi").await.unwrap();
        }
        let c = store.advance_cursors(bob, lobby, 3, 2).await.unwrap();
        assert_eq!(c, at(3, 2));
        let c = store.advance_cursors(bob, lobby, 1, 1).await.unwrap();
        assert_eq!(c, at(3, 2), "never backwards");
        let c = store.advance_cursors(bob, lobby, 0, 99).await.unwrap();
        assert_eq!(
            c,
            at(5, 5),
            "clamped to the head; delivered is at least read"
        );
        assert!(matches!(
            store.advance_cursors(bob, NO_CONVERSATION, 1, 1).await,
            Err(StoreError::NotFound)
        ));
    }
    let t = t.reopen().await;
    let store = &t.store;
    assert_eq!(store.cursors(bob, lobby).await.unwrap(), at(5, 5));
    assert_eq!(
        store.cursors(alice, lobby).await.unwrap(),
        at(5, 5),
        "an author caught up reads their own messages"
    );
}

pub(super) async fn a_request_queued_after_appends_sees_their_heads_and_cursors<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (one, two, reader) = (
        user(store, "one").await,
        user(store, "two").await,
        user(store, "reader").await,
    );
    let a = room(store, "a", one).await;
    let mut pending = Vec::new();
    for n in 1..=300u64 {
        let author = if n % 2 == 1 { two } else { one };
        pending.push(store.queue_append(a, author, "bot", n, "hi").await.unwrap());
    }
    // Queued after every append: it must see the head they made (it clamps to it).
    let cursors = store.advance_cursors(reader, a, 1000, 1000).await.unwrap();
    assert_eq!(cursors, at(300, 300));
    for append in pending {
        append.await.unwrap();
    }
    assert_eq!(store.head(a).await.unwrap(), 300);
    // Each author's cursors moved onto their own message only while it followed their read
    // cursor: `two` sent seq 1, then `one` seq 2 (`two`'s read cursor stays at 1, and `one`'s
    // never moved).
    let own = store.advance_cursors(two, a, 0, 0).await.unwrap();
    assert_eq!(own, at(1, 1));
    assert_eq!(store.cursors(one, a).await.unwrap(), at(0, 0));
}

pub(super) async fn member_cursors_name_each_member_in_id_order_up_to_the_limit<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    let lobby = room(store, "lobby", carol).await;
    store.join_room(alice, lobby).await.unwrap();
    store.join_room(bob, lobby).await.unwrap();
    for i in 1..=4 {
        store.append(lobby, carol, "carol", i, "hi").await.unwrap();
    }
    store.advance_cursors(alice, lobby, 4, 3).await.unwrap();
    store.advance_cursors(bob, lobby, 2, 0).await.unwrap();

    let mut ids = [
        (alice, "alice", at(4, 3)),
        (bob, "bob", at(2, 0)),
        (carol, "carol", at(4, 4)),
    ];
    ids.sort_unstable_by_key(|(id, ..)| *id);
    let listed: Vec<_> = store
        .member_cursors(lobby, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user, m.username, m.cursors))
        .collect();
    let expected: Vec<_> = ids
        .iter()
        .map(|&(id, name, cursors)| (id, name.to_owned(), cursors))
        .collect();
    assert_eq!(listed, expected);
    let first_two = store.member_cursors(lobby, 2).await.unwrap();
    assert_eq!(first_two.len(), 2);
    assert_eq!((first_two[0].user, first_two[1].user), (ids[0].0, ids[1].0));
    assert!(
        store
            .member_cursors(NO_CONVERSATION, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(super) async fn an_advance_queued_before_an_own_message_leaves_it_read<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    for r in 0..10u64 {
        let a = room(store, &format!("r{r}"), alice).await;
        for n in 1..=5u64 {
            store.append(a, bob, "bob", n, "hi").await.unwrap();
        }
        // Alice reads up to 5 and sends her own message; both queued before either commits
        // (usually one batch): queue order holds, so her own message (6) counts as read.
        let (advanced, own) = tokio::join!(
            store.advance_cursors(alice, a, 5, 5),
            store.append(a, alice, "alice", 1, "mine"),
        );
        assert_eq!(advanced.unwrap(), at(5, 5));
        assert_eq!(own.unwrap().message.seq, 6);
        assert_eq!(store.cursors(alice, a).await.unwrap(), at(6, 6), "room {r}");
    }
}
