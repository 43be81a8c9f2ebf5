//! What a connection's setup reads, each in one read transaction: the token check of `Hello`
//! ([`Redb::hello_user`]), the snapshot sent after `Welcome` ([`Redb::welcome_view`]) and what
//! `Join` needs to answer `Joined` and start the replay ([`Redb::join_view`]).
//!
//! Where they run. The store's rule is that reads run on the blocking pool, because a redb read
//! blocks (page reads, B-tree walks). Two setup reads are exempt and run on the calling task
//! ([`Redb::read_now`]), because their work is small, bounded and on hot pages: the token check
//! (two point lookups) and a plain `Join`'s view (three point lookups and the last `limit` (32)
//! messages, of at most 4 KiB each, which were just written and are in the cache). A trip to the
//! pool costs more than such a read: a thread wake-up, its scheduling on a busy machine, and the
//! task's wake-up again, on every connection. A `Join` that resumes from a cursor goes to the
//! pool: the peer picks where its batch starts, so it could aim a worker at cold pages again and
//! again. The welcome view stays on the pool too: its size is not bounded by what it counts
//! (each conversation's unread count walks up to 500 messages after the read cursor, so 16 rooms
//! never read are 8,000 records).
//!
//! Design: a separate [`Redb::read`] per table made ~7 trips per connect (a semaphore permit,
//! a `spawn_blocking` hand-off and a read transaction each), which was most of a connection's
//! setup cost. These compose the same synchronous per-table readers the single reads use, so
//! the data each returns is what those reads return, only consistent with one another. The
//! access rule for `Join` is passed in as `check` (it lives in `crate::access`) and runs in the
//! same transaction before anything of the conversation is read.

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};

use redb::{ReadTransaction, ReadableDatabase};

use super::accounts::{User, read_session_user};
use super::friends::{FriendEntry, FriendState, read_friends};
use super::last_seen::read_last_seen;
use super::membership::{ConversationKind, read_is_member, read_kind};
use super::messages::{read_head, read_messages_after};
use super::summaries::{Summary, read_summaries_and_blocks};
use super::{Redb, StoreError};
use crate::auth::TokenHash;

/// What is sent after `Welcome`, read in one transaction.
#[derive(Debug)]
pub struct WelcomeView {
    /// The user's friends (accepted friendships only), in ascending user id order.
    pub friends: Vec<FriendEntry>,
    /// When each friend was last online, for those ever recorded.
    pub seen: Vec<(UserId, u64)>,
    /// The user's conversations, most recently active first.
    pub summaries: Vec<Summary>,
    /// Whom the user blocks, ascending.
    pub blocked: Vec<UserId>,
}

/// What `Join` reads, in one transaction, once `check` allowed it.
#[derive(Debug)]
pub struct JoinView<G> {
    /// What `check` returned.
    pub grant: G,
    /// Whether the user is a member of the conversation.
    pub member: bool,
    /// The conversation's head seq.
    pub head: u64,
    /// Where the replay starts (`start(head)`): the first batch is the messages after it.
    pub from_seq: u64,
    /// The first replay batch (at most the `limit` asked for).
    pub batch: Vec<ChatMessage>,
}

impl Redb {
    /// Runs a small, bounded `read` in a read transaction right here, on the caller's thread,
    /// instead of on the blocking pool as [`Redb::read`] does: only for reads of a few pages
    /// (see the module doc). It counts as a running read for the deletion scrub's barrier.
    fn read_now<T>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _running = self.inner.reads.begin();
        let txn = self.inner.db.begin_read()?;
        read(&txn)
    }

    pub fn hello_user(&self, token: &TokenHash, now_ms: u64) -> Result<Option<User>, StoreError> {
        self.read_now(|txn| read_session_user(txn, token, now_ms))
    }

    pub async fn welcome_view(&self, user: UserId) -> Result<WelcomeView, StoreError> {
        self.read(move |txn| read_welcome(txn, user)).await
    }

    pub async fn join_view<G, E>(
        &self,
        user: UserId,
        conversation: ConversationId,
        check: impl FnOnce(Option<ConversationKind>) -> Result<G, E> + Send + 'static,
        start: impl FnOnce(u64) -> u64 + Send + 'static,
        recent: bool,
        limit: usize,
    ) -> Result<Result<JoinView<G>, E>, StoreError>
    where
        G: Send + 'static,
        E: Send + 'static,
    {
        let read = move |txn: &ReadTransaction| {
            let grant = match check(read_kind(txn, conversation)?) {
                Ok(grant) => grant,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let member = read_is_member(txn, user, conversation)?;
            let head = read_head(txn, conversation)?;
            let from_seq = start(head);
            let batch = read_messages_after(txn, conversation, from_seq, limit)?;
            Ok(Ok(JoinView {
                grant,
                member,
                head,
                from_seq,
                batch,
            }))
        };
        if recent {
            self.read_now(read)
        } else {
            self.read(read).await
        }
    }
}

/// The welcome view within a read transaction.
fn read_welcome(txn: &ReadTransaction, user: UserId) -> Result<WelcomeView, StoreError> {
    let friends: Vec<FriendEntry> = read_friends(txn, user)?
        .into_iter()
        .filter(|f| f.state == FriendState::Friends)
        .collect();
    let ids: Vec<UserId> = friends.iter().map(|f| f.user).collect();
    let seen = read_last_seen(txn, &ids)?;
    let (summaries, blocked) = read_summaries_and_blocks(txn, user)?;
    Ok(WelcomeView {
        friends,
        seen,
        summaries,
        blocked,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tempfile::TempDir;

    use super::*;

    fn open(dir: &TempDir) -> Redb {
        Redb::open(&dir.path().join("q.redb"), 4 << 20, Box::new(|_| {})).unwrap()
    }

    #[tokio::test]
    async fn join_view_reads_membership_head_and_the_first_batch_only_when_allowed() {
        let dir = TempDir::new().unwrap();
        let store = open(&dir);
        let alice = store.create_user("alice", "phc".into()).await.unwrap();
        let bob = store.create_user("bob", "phc".into()).await.unwrap();
        let room = store.create_room("general", alice.id).await.unwrap().id;
        for i in 0..5 {
            store
                .append(room, alice.id, "alice", i, &format!("m{i}"))
                .await
                .unwrap();
        }
        store.join_room(alice.id, room).await.unwrap();

        let allow = |kind: Option<ConversationKind>| kind.ok_or("unknown");
        let view = store
            .join_view(alice.id, room, allow, |head| head - 3, false, 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.grant, ConversationKind::Room);
        assert!(view.member);
        assert_eq!((view.head, view.from_seq), (5, 2));
        let seqs: Vec<u64> = view.batch.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [3, 4]);
        let bob_view = store
            .join_view(bob.id, room, allow, |head| head, true, 2)
            .await
            .unwrap()
            .unwrap();
        assert!(!bob_view.member);
        assert!(bob_view.batch.is_empty());

        // A refusal is returned as it is, and nothing of the conversation is read after it.
        let started = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&started);
        let refused = store
            .join_view(
                bob.id,
                room,
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
            .join_view(bob.id, ConversationId(999), allow, |head| head, true, 2)
            .await
            .unwrap();
        assert!(matches!(unknown, Err("unknown")));
    }

    #[tokio::test]
    async fn welcome_view_matches_the_single_reads() {
        let dir = TempDir::new().unwrap();
        let store = open(&dir);
        let alice = store.create_user("alice", "phc".into()).await.unwrap();
        let bob = store.create_user("bob", "phc".into()).await.unwrap();
        let carol = store.create_user("carol", "phc".into()).await.unwrap();
        store.add_friend(alice.id, bob.id).await.unwrap();
        store.add_friend(bob.id, alice.id).await.unwrap();
        // Only requested: not a friend yet.
        store.add_friend(alice.id, carol.id).await.unwrap();
        store.record_last_seen(bob.id, 1234).await.unwrap();
        let room = store.create_room("general", alice.id).await.unwrap().id;
        store.join_room(alice.id, room).await.unwrap();

        let view = store.welcome_view(alice.id).await.unwrap();
        let friends: Vec<UserId> = view.friends.iter().map(|f| f.user).collect();
        assert_eq!(friends, [bob.id]);
        assert_eq!(view.seen, [(bob.id, 1234)]);
        let (summaries, blocked) = store.summaries_and_blocks(alice.id).await.unwrap();
        let ids = |list: &[Summary]| list.iter().map(|s| s.conversation).collect::<Vec<_>>();
        assert_eq!(ids(&view.summaries), ids(&summaries));
        assert!(ids(&view.summaries).contains(&room));
        assert_eq!(view.blocked, blocked);
    }
}
