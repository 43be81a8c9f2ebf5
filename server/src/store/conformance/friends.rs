//! Conformance: friends and DMs — requests, acceptance, declining, cancelling, unfriending, and
//! exactly one DM per pair, made on the first friendship and kept for good.

use crate::store::{Added, ConversationKind, FriendState, Removed, StoreError};

use super::harness::{Fixture, Harness, NO_USER, befriend, user};

pub(super) async fn friend_requests_accept_into_one_dm_per_pair_and_removal_keeps_it<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    assert!(matches!(
        store.add_friend(alice, NO_USER).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::Requested
    );
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::AlreadyRequested
    );
    assert_eq!(
        store.friend_state(bob, alice).await.unwrap(),
        Some(FriendState::Incoming)
    );
    assert_eq!(
        store.friend_state(alice, bob).await.unwrap(),
        Some(FriendState::Outgoing)
    );
    assert_eq!(store.dm_between(alice, bob).await.unwrap(), None);
    let Added::Accepted(dm) = store.add_friend(bob, alice).await.unwrap() else {
        panic!("expected acceptance");
    };
    assert_eq!(store.dm_between(bob, alice).await.unwrap(), Some(dm));
    assert_eq!(store.dm_between(alice, bob).await.unwrap(), Some(dm));
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::AlreadyFriends(dm)
    );
    assert_eq!(
        store.conversation_kind(dm).await.unwrap(),
        Some(ConversationKind::Dm(alice.min(bob), alice.max(bob)))
    );
    assert!(store.is_member(alice, dm).await.unwrap());
    assert!(store.is_member(bob, dm).await.unwrap());
    assert!(!store.is_member(carol, dm).await.unwrap());
    // A DM is a conversation like a room: seqs, history.
    store.append(dm, alice, "alice", 1, "hey").await.unwrap();
    assert_eq!(store.head(dm).await.unwrap(), 1);

    // Carol asks Alice; Alice declines. Alice asks Carol and cancels.
    store.add_friend(carol, alice).await.unwrap();
    let friends = store.friends(alice).await.unwrap();
    let mut expected = vec![
        (bob, "bob", FriendState::Friends, Some(dm)),
        (carol, "carol", FriendState::Incoming, None),
    ];
    expected.sort_unstable_by_key(|e| e.0);
    assert_eq!(
        friends
            .iter()
            .map(|f| (f.user, f.username.as_str(), f.state, f.dm))
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(
        store.remove_friend(alice, carol).await.unwrap(),
        Removed::Declined
    );
    assert_eq!(store.friend_state(carol, alice).await.unwrap(), None);
    store.add_friend(alice, carol).await.unwrap();
    assert_eq!(
        store.remove_friend(alice, carol).await.unwrap(),
        Removed::Cancelled
    );
    assert_eq!(
        store.remove_friend(alice, carol).await.unwrap(),
        Removed::Nothing
    );

    assert_eq!(
        store.remove_friend(bob, alice).await.unwrap(),
        Removed::Unfriended
    );
    assert_eq!(store.friend_state(alice, bob).await.unwrap(), None);
    assert!(store.is_member(alice, dm).await.unwrap(), "the DM stays");
    assert_eq!(store.messages_after(dm, 0, 10).await.unwrap().len(), 1);
    // Befriending again reuses the DM.
    store.add_friend(alice, bob).await.unwrap();
    assert_eq!(
        store.add_friend(bob, alice).await.unwrap(),
        Added::Accepted(dm)
    );
}

pub(super) async fn crossing_requests_make_one_dm_and_each_pair_its_own<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    // Both ask at once: one request, one acceptance, one DM.
    let (one, two) = tokio::join!(store.add_friend(alice, bob), store.add_friend(bob, alice));
    let outcomes = [one.unwrap(), two.unwrap()];
    assert!(outcomes.contains(&Added::Requested), "{outcomes:?}");
    let dm = outcomes
        .iter()
        .find_map(|o| match o {
            Added::Accepted(dm) => Some(*dm),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no acceptance in {outcomes:?}"));
    assert_eq!(store.dm_between(alice, bob).await.unwrap(), Some(dm));
    assert_eq!(store.memberships(alice).await.unwrap(), [dm]);
    assert_eq!(store.memberships(bob).await.unwrap(), [dm]);
    assert_eq!(
        store.friend_state(alice, bob).await.unwrap(),
        Some(FriendState::Friends)
    );

    let with_carol = befriend(store, carol, alice).await;
    assert_ne!(with_carol, dm, "each pair has its own DM");
    assert_eq!(
        store.dm_between(alice, carol).await.unwrap(),
        Some(with_carol)
    );
    assert_eq!(store.dm_between(bob, carol).await.unwrap(), None);
    assert!(!store.is_member(bob, with_carol).await.unwrap());
    let friends: Vec<_> = store
        .friends(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.user, f.dm))
        .collect();
    let mut expected = vec![(bob, Some(dm)), (carol, Some(with_carol))];
    expected.sort_unstable();
    assert_eq!(friends, expected);

    // Durable: after a restart the pair finds the same DM and no second one is made.
    let t = t.reopen().await;
    let store = &t.store;
    assert_eq!(store.dm_between(bob, alice).await.unwrap(), Some(dm));
    store.remove_friend(alice, bob).await.unwrap();
    assert_eq!(
        store.add_friend(bob, alice).await.unwrap(),
        Added::Requested
    );
    assert_eq!(
        store.add_friend(alice, bob).await.unwrap(),
        Added::Accepted(dm)
    );
    assert_eq!(store.memberships(bob).await.unwrap(), [dm]);
}

pub(super) async fn friend_entries_are_capped_on_both_sides<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    // More users than one may have friends and requests with (the cap is 1000).
    const OTHERS: usize = 1_100;
    let hub = user(store, "hub").await;
    let mut signups = tokio::task::JoinSet::new();
    for i in 0..OTHERS {
        let store = store.clone();
        signups.spawn(async move { store.create_user(&format!("u{i}"), "phc".into()).await });
    }
    let mut others = Vec::new();
    while let Some(done) = signups.join_next().await {
        others.push(done.unwrap().unwrap().id);
    }
    let mut requests = tokio::task::JoinSet::new();
    for &other in &others {
        let store = store.clone();
        requests.spawn(async move { (other, store.add_friend(hub, other).await) });
    }
    let (mut asked, mut refused) = (Vec::new(), Vec::new());
    while let Some(done) = requests.join_next().await {
        match done.unwrap() {
            (other, Ok(Added::Requested)) => asked.push(other),
            (other, Err(StoreError::TooMany(_))) => refused.push(other),
            (other, outcome) => panic!("asking {other:?}: {outcome:?}"),
        }
    }
    assert!(!refused.is_empty(), "no cap below {OTHERS}");
    assert!(asked.len() >= 100, "a cap of only {}", asked.len());
    assert_eq!(store.friends(hub).await.unwrap().len(), asked.len());
    for &other in &refused[..10] {
        assert_eq!(store.friend_state(other, hub).await.unwrap(), None);
    }
    // The other side's list counts too: nobody may ask the full user either.
    assert!(matches!(
        store.add_friend(refused[0], hub).await,
        Err(StoreError::TooMany(_))
    ));
    assert_eq!(store.friend_state(hub, refused[0]).await.unwrap(), None);
    // An acceptance turns a request into a friendship: no new entry, so it is allowed.
    let accepted = store.add_friend(asked[0], hub).await.unwrap();
    assert!(matches!(accepted, Added::Accepted(_)), "{accepted:?}");
    // Withdrawing one makes room for one.
    assert_eq!(
        store.remove_friend(hub, asked[1]).await.unwrap(),
        Removed::Cancelled
    );
    assert_eq!(
        store.add_friend(refused[0], hub).await.unwrap(),
        Added::Requested
    );
    assert!(matches!(
        store.add_friend(hub, refused[1]).await,
        Err(StoreError::TooMany(_))
    ));
}
