//! Conformance: membership — joining and leaving rooms (the creator is in from the start), the
//! lists both ways, what a conversation is, and DMs, whose two members never leave.

use quibble_protocol::wire::UserId;

use crate::store::{ConversationKind, MemberCursors, StoreError};

use super::harness::{Fixture, Harness, NO_CONVERSATION, befriend, room, user};

fn members(list: Vec<MemberCursors>) -> Vec<UserId> {
    list.into_iter().map(|m| m.user).collect()
}

pub(super) async fn room_membership_is_durable_and_creating_a_room_joins_it<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let (alice, bob) = (user(&t.store, "alice").await, user(&t.store, "bob").await);
    let lobby = t.store.create_room("lobby", alice).await.unwrap().id;
    {
        let store = &t.store;
        assert!(
            store.is_member(alice, lobby).await.unwrap(),
            "the creator is in"
        );
        assert!(!store.is_member(bob, lobby).await.unwrap());
        assert!(store.join_room(bob, lobby).await.unwrap());
        assert!(!store.join_room(bob, lobby).await.unwrap(), "joining twice");
        assert_eq!(
            members(store.member_cursors(lobby, 10).await.unwrap()),
            vec![alice, bob]
        );
        assert!(matches!(
            store.join_room(bob, NO_CONVERSATION).await,
            Err(StoreError::NotFound)
        ));
    }

    let t = t.reopen().await;
    let store = &t.store;
    assert_eq!(store.memberships(bob).await.unwrap(), vec![lobby]);
    assert!(store.leave_room(bob, lobby).await.unwrap());
    assert!(!store.leave_room(bob, lobby).await.unwrap());
    assert!(store.memberships(bob).await.unwrap().is_empty());
    assert!(!store.is_member(bob, lobby).await.unwrap());
    assert_eq!(
        members(store.member_cursors(lobby, 10).await.unwrap()),
        vec![alice]
    );
    assert_eq!(
        store.conversation_kind(lobby).await.unwrap(),
        Some(ConversationKind::Room)
    );
    assert_eq!(
        store.conversation_kind(NO_CONVERSATION).await.unwrap(),
        None
    );
}

pub(super) async fn dms_cannot_be_joined_or_left<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    let lobby = room(store, "lobby", carol).await;
    let dm = befriend(store, alice, bob).await;

    assert!(matches!(
        store.join_room(carol, dm).await,
        Err(StoreError::NotFound)
    ));
    assert!(!store.is_member(carol, dm).await.unwrap());
    assert!(matches!(
        store.leave_room(alice, dm).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.leave_room(alice, NO_CONVERSATION).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.is_member(alice, dm).await.unwrap(), "still in it");
    assert_eq!(store.memberships(alice).await.unwrap(), [dm]);
    assert_eq!(
        members(store.member_cursors(dm, 10).await.unwrap()),
        [alice, bob]
    );
    // Ascending ids, rooms and DMs alike.
    store.join_room(alice, lobby).await.unwrap();
    let mut expected = vec![lobby, dm];
    expected.sort_unstable();
    assert_eq!(store.memberships(alice).await.unwrap(), expected);
}

pub(super) async fn memberships_are_capped_and_a_refusal_writes_nothing<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    // More rooms than one user may be in (the cap is 1000), made by makers who stay below it.
    const ROOMS: usize = 1_100;
    let makers = [
        user(store, "maker-a").await,
        user(store, "maker-b").await,
        user(store, "maker-c").await,
    ];
    let joiner = user(store, "joiner").await;
    let mut creations = tokio::task::JoinSet::new();
    for i in 0..ROOMS {
        let (store, maker) = (store.clone(), makers[i % makers.len()]);
        creations.spawn(async move { store.create_room(&format!("room {i}"), maker).await });
    }
    let mut rooms = Vec::new();
    while let Some(done) = creations.join_next().await {
        rooms.push(done.unwrap().unwrap().id);
    }
    rooms.sort_unstable();
    let mut joins = tokio::task::JoinSet::new();
    for &room in &rooms {
        let store = store.clone();
        joins.spawn(async move { (room, store.join_room(joiner, room).await) });
    }
    let (mut joined, mut refused) = (Vec::new(), Vec::new());
    while let Some(done) = joins.join_next().await {
        match done.unwrap() {
            (room, Ok(newly)) => {
                assert!(newly);
                joined.push(room);
            }
            (room, Err(StoreError::TooMany(_))) => refused.push(room),
            (room, Err(e)) => panic!("joining {room:?}: {e}"),
        }
    }
    assert!(!refused.is_empty(), "no cap below {ROOMS}");
    assert!(joined.len() >= 100, "a cap of only {}", joined.len());
    joined.sort_unstable();
    assert_eq!(store.memberships(joiner).await.unwrap(), joined);
    for &room in &refused {
        assert!(!store.is_member(joiner, room).await.unwrap());
    }
    // Creating a room would join it: refused too, and the name stays free.
    assert!(matches!(
        store.create_room("one too many", joiner).await,
        Err(StoreError::TooMany(_))
    ));
    room(store, "one too many", makers[0]).await;
    // Leaving makes room for one.
    assert!(store.leave_room(joiner, joined[0]).await.unwrap());
    assert!(store.join_room(joiner, refused[0]).await.unwrap());
    assert!(matches!(
        store.join_room(joiner, refused[1]).await,
        Err(StoreError::TooMany(_))
    ));
    assert!(
        !store.join_room(joiner, refused[0]).await.unwrap(),
        "already in: no cap applies"
    );
}
