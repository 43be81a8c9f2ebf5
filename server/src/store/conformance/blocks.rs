//! Conformance: blocks — one way, listed with names, capped at [`MAX_BLOCKS`], durable, ending
//! any friendship or request between the two and refusing new ones while they stand.

use crate::store::{Added, FriendState, MAX_BLOCKS, StoreError};

use super::harness::{Fixture, Harness, NO_USER, befriend, user};

pub(super) async fn blocks_are_listed_capped_and_survive_a_reopen<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let alice = user(&t.store, "alice").await;
    let last;
    let mut others = Vec::new();
    {
        let store = &t.store;
        // Signed up concurrently, so they may share commits.
        let mut signups = tokio::task::JoinSet::new();
        for i in 0..=MAX_BLOCKS {
            let store = store.clone();
            signups.spawn(async move { store.create_user(&format!("u{i}"), "phc".into()).await });
        }
        while let Some(done) = signups.join_next().await {
            others.push(done.unwrap().unwrap());
        }
        others.sort_by_key(|u| u.id);
        let mut blocks = tokio::task::JoinSet::new();
        for user in &others[..MAX_BLOCKS] {
            let (store, id) = (store.clone(), user.id);
            blocks.spawn(async move { store.block(alice, id).await });
        }
        while let Some(done) = blocks.join_next().await {
            assert!(done.unwrap().unwrap().changed);
        }
        last = others[MAX_BLOCKS].id;
        assert!(matches!(
            store.block(alice, last).await,
            Err(StoreError::TooMany(_))
        ));
        assert!(!store.blocks(alice, last).await.unwrap());
        assert!(
            !store.block(alice, others[3].id).await.unwrap().changed,
            "blocking again changes nothing, even when full"
        );
        assert!(matches!(
            store.block(alice, NO_USER).await,
            Err(StoreError::NotFound)
        ));
        assert!(store.unblock(alice, others[0].id).await.unwrap());
        assert!(!store.unblock(alice, others[0].id).await.unwrap());
        assert!(store.block(alice, last).await.unwrap().changed);
    }

    let t = t.reopen().await;
    let store = &t.store;
    let list = store.block_list(alice).await.unwrap();
    assert_eq!(list.len(), MAX_BLOCKS);
    assert_eq!(list[0].username, others[1].username);
    assert_eq!(list[0].user, others[1].id);
    assert!(list.windows(2).all(|w| w[0].user < w[1].user), "ascending");
    assert!(list.iter().all(|b| b.since_ms > 0));
    let ids = store.blocked_users(alice).await.unwrap();
    assert_eq!(ids, list.iter().map(|b| b.user).collect::<Vec<_>>());
    assert!(store.blocks(alice, last).await.unwrap());
    assert!(!store.blocks(alice, others[0].id).await.unwrap());
    assert!(!store.blocks(last, alice).await.unwrap(), "one way only");
}

pub(super) async fn a_block_ends_a_friendship_and_refuses_requests_both_ways<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    let dm = befriend(store, alice, bob).await;
    store.add_friend(carol, alice).await.unwrap();

    let blocked = store.block(alice, bob).await.unwrap();
    assert!(blocked.changed && blocked.ended_friendship);
    assert_eq!(store.friend_state(alice, bob).await.unwrap(), None);
    assert_eq!(store.friend_state(bob, alice).await.unwrap(), None);
    // A pending request, whichever way, ends too.
    let blocked = store.block(alice, carol).await.unwrap();
    assert!(blocked.changed && blocked.ended_friendship);
    assert_eq!(store.friend_state(carol, alice).await.unwrap(), None);
    let again = store.block(alice, carol).await.unwrap();
    assert!(!again.changed && !again.ended_friendship);

    for (from, to) in [(alice, bob), (bob, alice)] {
        assert!(
            matches!(store.add_friend(from, to).await, Err(StoreError::Blocked)),
            "a request either way is refused"
        );
    }
    assert_eq!(
        store.friend_state(bob, alice).await.unwrap(),
        None,
        "and leaves nothing"
    );
    assert!(store.is_member(bob, dm).await.unwrap(), "the DM stays");

    // Unblocking restores nothing, but allows asking again; the pair's DM is reused.
    assert!(store.unblock(alice, bob).await.unwrap());
    assert_eq!(store.friend_state(alice, bob).await.unwrap(), None);
    assert_eq!(
        store.add_friend(bob, alice).await.unwrap(),
        Added::Requested
    );
    assert_eq!(
        store.friend_state(alice, bob).await.unwrap(),
        Some(FriendState::Incoming)
    );
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::Accepted(dm)
    );
    let friends = store.friends(alice).await.unwrap();
    assert_eq!(friends.len(), 1, "carol's request stayed ended");
    assert_eq!((friends[0].user, friends[0].dm), (bob, Some(dm)));
}
