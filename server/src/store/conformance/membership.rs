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
