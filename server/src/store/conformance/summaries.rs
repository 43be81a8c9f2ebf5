//! Conformance: the conversation list — each conversation a user is in with its title, head,
//! the user's (and a DM peer's) cursors, the unread count and the last message, most recent
//! first; blocked users' messages neither count nor show.

use std::time::Duration;

use quibble_protocol::wire::UserId;

use crate::store::{ConversationKind, Cursors, PREVIEW_CHARS};

use super::harness::{Fixture, Harness, befriend, user};

pub(super) async fn summaries_count_unread_from_the_read_cursor_without_own_messages<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let lobby = store.create_room("lobby", alice).await.unwrap().id;
    let quiet = store.create_room("quiet", bob).await.unwrap().id;
    store.join_room(bob, lobby).await.unwrap();
    // Later than the joins, whatever the clock's resolution.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 1..=3 {
        store
            .append(lobby, alice, "alice", i, "from alice")
            .await
            .unwrap();
    }
    // Bob writes without having read: his message is not unread for him, alice's are.
    store
        .append(lobby, bob, "bob", 1, "from bob")
        .await
        .unwrap();
    store
        .append(lobby, alice, "alice", 4, &"x".repeat(3 * PREVIEW_CHARS))
        .await
        .unwrap();

    let list = store.summaries(bob).await.unwrap();
    assert_eq!(list.len(), 2);
    let lobby_view = &list[0];
    assert_eq!(lobby_view.conversation, lobby, "most recent activity first");
    assert_eq!(lobby_view.kind, ConversationKind::Room);
    assert_eq!(lobby_view.title, "lobby");
    assert_eq!(lobby_view.head_seq, 5);
    assert_eq!(lobby_view.unread, 4);
    assert_eq!(lobby_view.peer_cursors, None, "a room has no peer");
    let last = lobby_view.last.as_ref().unwrap();
    assert_eq!((last.seq, last.author_name.as_str()), (5, "alice"));
    assert_eq!(last.author, alice);
    assert_eq!(
        last.preview,
        "x".repeat(PREVIEW_CHARS),
        "the body's first characters"
    );
    assert_eq!(list[1].conversation, quiet);
    assert_eq!((list[1].unread, list[1].last.clone()), (0, None));
    assert!(list[1].joined_at_ms > 0);

    store.advance_cursors(bob, lobby, 5, 2).await.unwrap();
    let view = store.summary(bob, lobby).await.unwrap().unwrap();
    assert_eq!(view.unread, 2, "seqs 3 and 5; 4 is bob's own");
    assert_eq!(
        view.cursors,
        Cursors {
            delivered: 5,
            read: 2
        }
    );
    let alice_view = store.summary(alice, lobby).await.unwrap().unwrap();
    assert_eq!(alice_view.unread, 1, "only bob's message");
    assert_eq!(
        store.summary(alice, quiet).await.unwrap(),
        None,
        "not a member"
    );
}

pub(super) async fn a_dm_summary_names_the_peer_and_shows_their_cursors<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let dm = befriend(store, alice, bob).await;
    let kind = ConversationKind::Dm(alice.min(bob), alice.max(bob));
    let fresh = store.summary(alice, dm).await.unwrap().unwrap();
    assert_eq!((fresh.head_seq, fresh.unread, fresh.last), (0, 0, None));
    assert!(fresh.joined_at_ms > 0, "when the DM was made");
    for i in 1..=3 {
        store.append(dm, alice, "alice", i, "hey").await.unwrap();
    }
    store.advance_cursors(bob, dm, 3, 2).await.unwrap();

    let mine = store.summary(alice, dm).await.unwrap().unwrap();
    assert_eq!((mine.kind, mine.title.as_str()), (kind, "bob"));
    assert_eq!(mine.unread, 0, "all alice's own");
    assert_eq!(
        mine.peer_cursors,
        Some(Cursors {
            delivered: 3,
            read: 2
        }),
        "what alice's messages reached"
    );
    let theirs = store.summary(bob, dm).await.unwrap().unwrap();
    assert_eq!((theirs.kind, theirs.title.as_str()), (kind, "alice"));
    assert_eq!(theirs.unread, 1);
    assert_eq!(
        theirs.peer_cursors,
        Some(Cursors {
            delivered: 3,
            read: 3
        })
    );
    assert_eq!(store.summaries(bob).await.unwrap(), [theirs]);
}

pub(super) async fn blocked_authors_are_not_unread_and_their_last_message_is_hidden<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    let lobby = store.create_room("lobby", alice).await.unwrap().id;
    store.join_room(bob, lobby).await.unwrap();
    store.join_room(carol, lobby).await.unwrap();
    let dm = befriend(store, alice, bob).await;
    store.block(bob, carol).await.unwrap();
    store.append(lobby, carol, "carol", 1, "c1").await.unwrap();
    store.append(lobby, alice, "alice", 1, "a1").await.unwrap();
    let last = store.append(lobby, carol, "carol", 2, "c2").await.unwrap();

    let (list, blocked) = store.summaries_and_blocks(bob).await.unwrap();
    assert_eq!(blocked, [carol]);
    let view = list.iter().find(|s| s.conversation == lobby).unwrap();
    assert_eq!(view.unread, 1, "only alice's message counts");
    let shown = view.last.as_ref().unwrap();
    assert_eq!(
        (
            shown.seq,
            shown.author,
            shown.author_name.as_str(),
            shown.preview.as_str(),
            shown.sent_at_ms
        ),
        (3, UserId::NOBODY, "", "", last.message.sent_at_ms),
        "the hidden marker"
    );
    assert_eq!(store.summaries(bob).await.unwrap(), list);
    let alices = store.summary(alice, lobby).await.unwrap().unwrap();
    assert_eq!(alices.unread, 2);
    assert_eq!(alices.last.unwrap().author, carol);

    // A DM peer one blocks: their messages do not count and their cursors read as zero.
    store.append(dm, alice, "alice", 9, "hi").await.unwrap();
    store.advance_cursors(bob, dm, 1, 1).await.unwrap();
    store.block(alice, bob).await.unwrap();
    store.append(dm, bob, "bob", 9, "hello?").await.unwrap();
    let view = store.summary(alice, dm).await.unwrap().unwrap();
    assert_eq!(view.unread, 0);
    assert_eq!(view.peer_cursors, Some(Cursors::default()));
    assert_eq!(view.last.unwrap().author, UserId::NOBODY);
    let bobs = store.summary(bob, dm).await.unwrap().unwrap();
    assert_eq!(bobs.peer_cursors.map(|c| c.read), Some(1), "alice's own");
    let (_, blocked) = store.summaries_and_blocks(alice).await.unwrap();
    assert_eq!(blocked, [bob]);
}
