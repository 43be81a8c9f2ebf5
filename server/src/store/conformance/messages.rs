//! Conformance: messages — seqs per conversation, `(author, conversation, client_id)`
//! de-duplication, history pages both ways, resuming from a cursor, and deletion: tombstones in
//! history and in the commit hook, and the deletions index a resume reads.

use quibble_protocol::wire::{ChatMessage, ConversationId};

use crate::store::{Store, StoreError};

use super::harness::{Fixture, Harness, NO_CONVERSATION, room, seqs, user};

pub(super) async fn append_assigns_seqs_per_conversation<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let b = room(store, "b", alice).await;
    assert_eq!(store.head(a).await.unwrap(), 0);
    assert_eq!(store.head(NO_CONVERSATION).await.unwrap(), 0);

    let mut appended = Vec::new();
    for (i, conversation) in [a, a, b, a].into_iter().enumerate() {
        let body = format!("m{i}");
        let done = store
            .append(conversation, alice, "alice", i as u64, &body)
            .await
            .unwrap();
        assert!(!done.duplicate);
        assert_eq!(done.message.body, body);
        assert_eq!(done.message.author, alice);
        assert_eq!(done.message.author_name, "alice");
        assert_eq!(done.message.client_id, i as u64);
        assert_eq!(done.message.conversation, conversation);
        appended.push(done.message);
    }
    assert_eq!(seqs(&appended), [1, 2, 1, 3]);
    assert_eq!(store.head(a).await.unwrap(), 3);
    assert_eq!(store.head(b).await.unwrap(), 1);
    let in_a = store.messages_after(a, 0, 100).await.unwrap();
    assert_eq!(seqs(&in_a), [1, 2, 3]);
    assert_eq!(
        in_a[2], appended[3],
        "history holds what the append answered"
    );
    assert!(in_a.windows(2).all(|w| w[0].sent_at_ms <= w[1].sent_at_ms));
    assert_eq!(
        store.message(b, 1).await.unwrap(),
        Some(appended[2].clone())
    );
    assert_eq!(store.message(b, 2).await.unwrap(), None);
    assert_eq!(t.hooked.messages(), appended);

    assert!(matches!(
        store.append(NO_CONVERSATION, alice, "alice", 99, "x").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(t.hooked.messages().len(), 4, "a refused append is not told");
}

pub(super) async fn heads_are_read_together_in_the_order_asked<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let b = room(store, "b", alice).await;
    assert_eq!(store.heads(Vec::new()).await.unwrap(), []);
    for (i, conversation) in [a, b, a, a].into_iter().enumerate() {
        store
            .append(conversation, alice, "alice", i as u64, "x")
            .await
            .unwrap();
    }
    assert_eq!(
        store.heads(vec![b, NO_CONVERSATION, a]).await.unwrap(),
        [(b, 1), (NO_CONVERSATION, 0), (a, 3)]
    );
}

pub(super) async fn a_resent_client_id_returns_the_original<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let a = room(store, "a", alice).await;

    let first = store.append(a, alice, "alice", 7, "hello").await.unwrap();
    let again = store.append(a, alice, "alice", 7, "hello?").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(store.head(a).await.unwrap(), 1);
    assert_eq!(t.hooked.messages().len(), 1, "no hook call for a duplicate");

    // Client ids are per author.
    let other = store.append(a, bob, "bob", 7, "hi").await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 2);
}

pub(super) async fn client_ids_are_de_duplicated_per_conversation<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let b = room(store, "b", alice).await;

    let in_a = store.append(a, alice, "alice", 7, "to a").await.unwrap();
    // The same client id in another conversation is another message, stored there.
    let in_b = store.append(b, alice, "alice", 7, "to b").await.unwrap();
    assert!(!in_b.duplicate);
    assert_eq!(
        (in_b.message.conversation, in_b.message.seq),
        (b, 1),
        "stored in b"
    );
    assert_eq!(
        store.messages_after(b, 0, 10).await.unwrap(),
        std::slice::from_ref(&in_b.message)
    );
    // A resend in either conversation returns that conversation's original.
    let again_a = store.append(a, alice, "alice", 7, "to a").await.unwrap();
    let again_b = store.append(b, alice, "alice", 7, "to b").await.unwrap();
    assert!(again_a.duplicate && again_b.duplicate);
    assert_eq!(again_a.message, in_a.message);
    assert_eq!(again_b.message, in_b.message);
    assert_eq!(t.hooked.messages().len(), 2);
}

pub(super) async fn a_client_id_queued_twice_is_stored_once<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;

    // Queued back to back, so the resend may well be applied with its original.
    let first = store
        .queue_append(a, alice, "alice", 1, "one")
        .await
        .unwrap();
    let resent = store
        .queue_append(a, alice, "alice", 1, "one")
        .await
        .unwrap();
    let second = store
        .queue_append(a, alice, "alice", 2, "two")
        .await
        .unwrap();
    let (first, resent, second) = (
        first.await.unwrap(),
        resent.await.unwrap(),
        second.await.unwrap(),
    );
    assert!(!first.duplicate && resent.duplicate && !second.duplicate);
    assert_eq!(resent.message, first.message);
    assert_eq!((first.message.seq, second.message.seq), (1, 2));
    assert_eq!(seqs(&store.messages_after(a, 0, 10).await.unwrap()), [1, 2]);
    assert_eq!(
        t.hooked.messages(),
        [first.message, second.message],
        "told each message once"
    );
}

pub(super) async fn queued_appends_take_seqs_in_queue_order<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let mut pending = Vec::new();
    for i in 1..=50u64 {
        pending.push(
            store
                .queue_append(a, alice, "alice", i, &format!("m{i}"))
                .await
                .unwrap(),
        );
    }
    for (i, appended) in (1..).zip(pending) {
        let message = appended.await.unwrap().message;
        assert_eq!((message.seq, message.body), (i, format!("m{i}")));
    }
    assert_eq!(store.head(a).await.unwrap(), 50);
}

pub(super) async fn history_pages_forwards_and_backwards<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let a = room(store, "a", alice).await;
    let b = room(store, "b", alice).await;
    for i in 0..25u64 {
        store.append(a, alice, "alice", i, "in a").await.unwrap();
        store
            .append(b, alice, "alice", 100 + i, "in b")
            .await
            .unwrap();
    }

    assert_eq!(
        seqs(&store.messages_after(a, 0, 10).await.unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_after(a, 20, 10).await.unwrap()),
        [21, 22, 23, 24, 25]
    );
    assert!(store.messages_after(a, 25, 10).await.unwrap().is_empty());
    assert!(
        store
            .messages_after(a, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.messages_after(a, 0, 0).await.unwrap().is_empty());

    assert_eq!(
        seqs(&store.messages_before(a, 26, 10).await.unwrap()),
        (16..=25).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_before(a, u64::MAX, 3).await.unwrap()),
        [23, 24, 25]
    );
    assert_eq!(
        seqs(&store.messages_before(a, 16, 10).await.unwrap()),
        (6..=15).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store.messages_before(a, 6, 10).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert!(store.messages_before(a, 1, 10).await.unwrap().is_empty());
    assert!(store.messages_before(a, 0, 10).await.unwrap().is_empty());
    assert!(store.messages_before(a, 10, 0).await.unwrap().is_empty());

    let all_a = store.messages_after(a, 0, 1000).await.unwrap();
    assert!(
        all_a
            .iter()
            .all(|m| m.conversation == a && m.body == "in a")
    );
    assert_eq!(
        store
            .messages_before(NO_CONVERSATION, 10, 10)
            .await
            .unwrap(),
        []
    );
    assert!(
        store
            .messages_after(NO_CONVERSATION, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Every message after `cursor`, paging forwards `page` at a time as a resuming client does.
async fn resume(
    store: &Store,
    conversation: ConversationId,
    mut cursor: u64,
    page: usize,
) -> Vec<ChatMessage> {
    let mut got = Vec::new();
    loop {
        let batch = store
            .messages_after(conversation, cursor, page)
            .await
            .unwrap();
        assert!(batch.len() <= page);
        let Some(last) = batch.last() else {
            return got;
        };
        cursor = last.seq;
        got.extend(batch);
    }
}

pub(super) async fn resuming_from_a_cursor_gets_every_later_message_once<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let (alice, bob) = (user(&t.store, "alice").await, user(&t.store, "bob").await);
    let lobby = room(&t.store, "lobby", alice).await;
    let other = room(&t.store, "other", alice).await;
    for i in 1..=30u64 {
        let (author, name) = if i % 3 == 0 {
            (bob, "bob")
        } else {
            (alice, "alice")
        };
        t.store
            .append(lobby, author, name, i, &format!("m{i}"))
            .await
            .unwrap();
        t.store
            .append(other, alice, "alice", 100 + i, "elsewhere")
            .await
            .unwrap();
    }
    // A client had everything up to seq 12; meanwhile seq 5 (which it has) and seq 20 (which
    // it has not) were deleted.
    t.store.delete_message(lobby, 5, None).await.unwrap();
    t.store.delete_message(lobby, 20, None).await.unwrap();
    let epoch = t.store.epoch();

    let resumed = resume(&t.store, lobby, 12, 7).await;
    assert_eq!(
        seqs(&resumed),
        (13..=30).collect::<Vec<_>>(),
        "each once, in order"
    );
    assert!(resumed.iter().all(|m| m.conversation == lobby));
    let deleted: Vec<u64> = resumed
        .iter()
        .filter(|m| m.is_deleted())
        .map(|m| m.seq)
        .collect();
    assert_eq!(deleted, [20], "the later deletion arrives as its tombstone");
    assert_eq!(resumed[0].body, "m13");
    assert_eq!(resumed[0].author, alice);
    assert_eq!(resumed[2].author, bob);
    // What the client must still mark deleted in what it has: the deletions up to its cursor.
    assert_eq!(
        t.store.deletions_up_to(lobby, 12, 12, 100).await.unwrap(),
        [5]
    );

    // After a restart the same cursor (same epoch) resumes to the same messages.
    let t = t.reopen().await;
    assert_eq!(t.store.epoch(), epoch);
    assert_eq!(resume(&t.store, lobby, 12, 5).await, resumed);
    assert_eq!(
        resume(&t.store, lobby, 30, 5).await,
        [],
        "a client at the head gets nothing"
    );
}

pub(super) async fn deleting_leaves_a_tombstone_indexes_it_and_tells_the_hook_once<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = user(store, "alice").await;
    let lobby = room(store, "lobby", alice).await;
    for (client_id, body) in [(1, "one"), (2, "two"), (3, "three")] {
        store
            .append(lobby, alice, "alice", client_id, body)
            .await
            .unwrap();
    }
    let original = store.message(lobby, 3).await.unwrap().unwrap();
    let done = store.delete_message(lobby, 3, None).await.unwrap();
    assert!(done.changed);
    assert!(done.tombstone.is_deleted());
    assert_eq!(done.tombstone, original.tombstone());
    assert_eq!(
        (
            done.tombstone.seq,
            done.tombstone.author,
            done.tombstone.client_id
        ),
        (3, alice, 0)
    );
    assert_eq!(t.hooked.messages().last(), Some(&done.tombstone));
    let stored = store.messages_after(lobby, 0, 10).await.unwrap();
    assert_eq!(seqs(&stored), [1, 2, 3], "seqs stay contiguous");
    assert_eq!(stored[2], done.tombstone);
    assert_eq!(
        store.message(lobby, 3).await.unwrap(),
        Some(done.tombstone.clone())
    );
    assert_eq!(store.head(lobby).await.unwrap(), 3, "the head stays");

    // Twice: nothing changes, nothing is published.
    let hooked = t.hooked.messages().len();
    let again = store.delete_message(lobby, 3, None).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.tombstone, done.tombstone);
    assert_eq!(t.hooked.messages().len(), hooked);
    assert!(matches!(
        store.delete_message(lobby, 4, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_message(NO_CONVERSATION, 1, None).await,
        Err(StoreError::NotFound)
    ));

    store.delete_message(lobby, 1, None).await.unwrap();
    assert_eq!(
        store.deletions_up_to(lobby, 3, 1000, 10).await.unwrap(),
        [1, 3]
    );
    assert_eq!(
        store.deletions_up_to(lobby, 2, 1000, 10).await.unwrap(),
        [1]
    );
    assert_eq!(store.deletions_up_to(lobby, 3, 1, 10).await.unwrap(), [3]);
    assert_eq!(
        store.deletions_up_to(lobby, 3, 1000, 1).await.unwrap(),
        [3],
        "the nearest to the resume point"
    );
    // A later append takes the next seq after the tombstones.
    let next = store
        .append(lobby, alice, "alice", 4, "four")
        .await
        .unwrap();
    assert_eq!(next.message.seq, 4);
}

pub(super) async fn tombstones_read_the_same_both_ways_and_after_a_reopen<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let alice = user(&t.store, "alice").await;
    let lobby = room(&t.store, "lobby", alice).await;
    for i in 1..=6u64 {
        t.store
            .append(lobby, alice, "alice", i, &format!("secret {i}"))
            .await
            .unwrap();
    }
    let tombstone = t
        .store
        .delete_message(lobby, 4, None)
        .await
        .unwrap()
        .tombstone;
    let backwards = t.store.messages_before(lobby, u64::MAX, 10).await.unwrap();
    let forwards = t.store.messages_after(lobby, 0, 10).await.unwrap();
    assert_eq!(backwards, forwards);
    assert_eq!(backwards[3], tombstone);
    assert!(
        backwards.iter().all(|m| !m.body.contains("secret 4")),
        "the body is gone from history"
    );

    let t = t.reopen().await;
    let store = &t.store;
    assert_eq!(store.messages_after(lobby, 0, 10).await.unwrap(), forwards);
    assert_eq!(store.message(lobby, 4).await.unwrap(), Some(tombstone));
    assert_eq!(store.deletions_up_to(lobby, 6, 6, 10).await.unwrap(), [4]);
    assert!(
        !store.delete_message(lobby, 4, None).await.unwrap().changed,
        "still deleted"
    );
    assert!(t.hooked.calls().is_empty(), "nothing told again");
}

pub(super) async fn a_resend_of_a_deleted_message_stays_deleted<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let lobby = room(store, "lobby", alice).await;
    store
        .append(lobby, alice, "alice", 9, "oops")
        .await
        .unwrap();
    let tombstone = store
        .delete_message(lobby, 1, None)
        .await
        .unwrap()
        .tombstone;
    let told = t.hooked.messages().len();

    let resent = store
        .append(lobby, alice, "alice", 9, "oops")
        .await
        .unwrap();
    assert!(resent.duplicate, "the client id is still known");
    assert_eq!(resent.message, tombstone, "answered with the tombstone");
    assert_eq!(store.head(lobby).await.unwrap(), 1);
    assert_eq!(store.message(lobby, 1).await.unwrap(), Some(tombstone));
    assert_eq!(t.hooked.messages().len(), told);
    // Another author's same client id is a new message.
    let other = store.append(lobby, bob, "bob", 9, "mine").await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 2);
}
