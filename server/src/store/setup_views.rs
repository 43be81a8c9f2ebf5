//! What a connection's setup reads, each in one read transaction and one trip to the blocking
//! pool: the snapshot sent after `Welcome` ([`Store::welcome_view`]) and what `Join` needs to
//! answer `Joined` and start the replay ([`Store::join_view`]).
//!
//! Design: a separate [`Store::read`] per table made ~7 trips per connect (a semaphore permit,
//! a `spawn_blocking` hand-off and a read transaction each), which was most of a connection's
//! setup cost. These compose the same synchronous per-table readers the single reads use, so
//! the data each returns is what those reads return, only consistent with one another. The
//! access rule for `Join` is passed in as `check` (it lives in `crate::access`) and runs in the
//! same transaction before anything of the conversation is read.

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};

use super::friends::{FriendEntry, FriendState, read_friends};
use super::last_seen::read_last_seen;
use super::membership::{ConversationKind, read_is_member, read_kind};
use super::messages::{read_head, read_messages_after};
use super::summaries::{Summary, read_summaries_and_blocks};
use super::{Store, StoreError};

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

impl Store {
    /// The user's accepted friends with their last-seen times, conversation summaries and
    /// blocked users, in one read transaction.
    pub async fn welcome_view(&self, user: UserId) -> Result<WelcomeView, StoreError> {
        self.read(move |txn| {
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
        })
        .await
    }

    /// `Join`'s reads in one transaction: the conversation's kind (`None`: no such
    /// conversation), given to `check`, which decides whether `user` may read it; only if it
    /// may: the membership, the head, and the first `limit` messages after `start(head)`.
    /// A refusal by `check` is the inner `Err`.
    pub async fn join_view<G, E>(
        &self,
        user: UserId,
        conversation: ConversationId,
        check: impl FnOnce(Option<ConversationKind>) -> Result<G, E> + Send + 'static,
        start: impl FnOnce(u64) -> u64 + Send + 'static,
        limit: usize,
    ) -> Result<Result<JoinView<G>, E>, StoreError>
    where
        G: Send + 'static,
        E: Send + 'static,
    {
        self.read(move |txn| {
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
        })
        .await
    }
}
