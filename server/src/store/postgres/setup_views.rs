//! What a connection's setup reads on PostgreSQL, each view in one read-only REPEATABLE READ
//! transaction (one snapshot, as the embedded engine's one read transaction): the token check
//! of `Hello`, the snapshot sent after `Welcome`, and what `Join` needs to answer `Joined` and
//! start the replay. The access rule for `Join` is passed in as `check` (it lives in
//! `crate::access`) and runs before anything of the conversation is read.

use quibble_protocol::wire::{ConversationId, UserId};
use tokio_postgres::IsolationLevel;

use super::errors::db_error;
use super::friends::read_friends;
use super::last_seen::read_last_seen;
use super::membership::kind;
use super::messages::{read_head, read_messages_after};
use super::summaries::read_summaries_and_blocks;
use super::{Postgres, StoreError, to_sql};
use crate::auth::TokenHash;
use crate::store::{ConversationKind, FriendState, JoinView, User, WelcomeView};

impl Postgres {
    pub async fn hello_user(
        &self,
        token: &TokenHash,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError> {
        self.session_user(token, now_ms).await
    }

    pub async fn welcome_view(&self, user: UserId) -> Result<WelcomeView, StoreError> {
        let mut client = self.client().await?;
        let txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_error)?;
        let friends: Vec<_> = read_friends(&*txn, user)
            .await?
            .into_iter()
            .filter(|f| f.state == FriendState::Friends)
            .collect();
        let ids: Vec<UserId> = friends.iter().map(|f| f.user).collect();
        let seen = read_last_seen(&*txn, &ids).await?;
        let (summaries, blocked) = read_summaries_and_blocks(&*txn, user).await?;
        Ok(WelcomeView {
            friends,
            seen,
            summaries,
            blocked,
        })
    }

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
        let mut client = self.client().await?;
        let txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_error)?;
        let grant = match check(kind(&txn, conversation).await?) {
            Ok(grant) => grant,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let member = txn
            .query_opt(
                "SELECT 1 FROM members WHERE user_id = $1 AND conversation_id = $2",
                &[&to_sql(user.0), &to_sql(conversation.0)],
            )
            .await
            .map_err(db_error)?
            .is_some();
        let head = read_head(&*txn, conversation).await?;
        let from_seq = start(head);
        let batch = read_messages_after(&*txn, conversation, from_seq, limit).await?;
        Ok(Ok(JoinView {
            grant,
            member,
            head,
            from_seq,
            batch,
        }))
    }
}
