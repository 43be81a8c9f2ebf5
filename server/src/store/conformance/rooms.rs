//! Conformance: rooms — names unique up to case and look-alikes, the room list in creation
//! order, paged with each room's head seq.

use std::collections::BTreeSet;

use crate::store::StoreError;

use super::harness::{Fixture, Harness, NO_CONVERSATION, all_rooms, room, user};

pub(super) async fn rooms_have_unique_names_and_list_in_creation_order<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (ann, bob) = (user(store, "ann").await, user(store, "bob").await);

    let general = store.create_room("General", ann).await.unwrap();
    assert_eq!(general.name, "General");
    assert_eq!(general.created_by, ann);
    assert!(general.created_at_ms > 0);
    assert!(matches!(
        store.create_room("general", bob).await,
        Err(StoreError::NameTaken)
    ));
    let beta = store.create_room("beta", ann).await.unwrap();
    let alpha = store.create_room("Alpha", ann).await.unwrap();
    assert_eq!(
        BTreeSet::from([general.id, beta.id, alpha.id]).len(),
        3,
        "room ids are distinct"
    );

    let names: Vec<_> = all_rooms(store).await.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["General", "beta", "Alpha"]);
    assert_eq!(store.room(general.id).await.unwrap(), Some(general));
    assert_eq!(store.room(NO_CONVERSATION).await.unwrap(), None);
}

pub(super) async fn look_alike_room_names_are_one_name<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (ann, bob) = (user(store, "ann").await, user(store, "bob").await);
    store.create_room("General", ann).await.unwrap();
    for alike in [
        "general",
        "Genera\u{217c}",
        "G\u{435}neral",
        "GENERAL\u{200d}",
    ] {
        assert!(
            matches!(
                store.create_room(alike, bob).await,
                Err(StoreError::NameTaken)
            ),
            "{alike:?}"
        );
    }
    store.create_room("Generals", bob).await.unwrap();
    assert_eq!(all_rooms(store).await.len(), 2);
}

pub(super) async fn the_room_list_pages_with_heads_in_one_read<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let ann = user(store, "ann").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(room(store, &format!("room {i}"), ann).await);
    }
    store.append(ids[3], ann, "ann", 1, "x").await.unwrap();
    store.append(ids[3], ann, "ann", 2, "y").await.unwrap();

    let first = store.rooms_page(None, 3).await.unwrap();
    let got: Vec<_> = first.rooms.iter().map(|e| e.room.id).collect();
    assert_eq!(got, ids[..3]);
    assert_eq!(first.next, Some(ids[2]));
    let second = store.rooms_page(first.next, 3).await.unwrap();
    let got: Vec<_> = second
        .rooms
        .iter()
        .map(|e| (e.room.id, e.head_seq))
        .collect();
    assert_eq!(got, [(ids[3], 2), (ids[4], 0)]);
    assert_eq!(second.next, None, "the last page has no next");
    let exact = store.rooms_page(None, 5).await.unwrap();
    assert_eq!((exact.rooms.len(), exact.next), (5, None));
    assert!(
        store
            .rooms_page(Some(ids[4]), 3)
            .await
            .unwrap()
            .rooms
            .is_empty()
    );
}

pub(super) async fn dms_are_not_in_the_room_list<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (ann, bob) = (user(store, "ann").await, user(store, "bob").await);
    let lobby = room(store, "lobby", ann).await;
    let dm = super::harness::befriend(store, ann, bob).await;
    let later = room(store, "later", bob).await;
    let ids: Vec<_> = all_rooms(store).await.into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [lobby, later]);
    assert_eq!(store.room(dm).await.unwrap(), None, "a DM is no room");
}
