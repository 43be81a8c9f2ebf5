//! Durable membership on PostgreSQL: which conversations a user is in, one `members` row each
//! (keyed by user, indexed by conversation), and what a conversation is (room or DM).
//!
//! The cap of [`MAX_MEMBERSHIPS`] per user holds across nodes: a join locks the user's row
//! before counting, so two joins of one user on two nodes count one after the other.

use quibble_protocol::wire::{ConversationId, UserId};
use tokio_postgres::Transaction;

use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, now_ms, to_sql};
use crate::store::{ConversationKind, MAX_MEMBERSHIPS};

impl Postgres {
    pub async fn join_room(&self, user: UserId, room: ConversationId) -> Result<bool, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        if kind(&txn, room).await? != Some(ConversationKind::Room) {
            return Err(StoreError::NotFound);
        }
        // The user's row first: two joins of one user (two devices, two nodes) take turns, so
        // the second sees the first's membership instead of failing on its key.
        lock_user(&txn, user).await?;
        let member = txn
            .query_opt(
                "SELECT 1 FROM members WHERE user_id = $1 AND conversation_id = $2",
                &[&to_sql(user.0), &to_sql(room.0)],
            )
            .await
            .map_err(db_error)?;
        if member.is_some() {
            return Ok(false);
        }
        add(&txn, user, room).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    pub async fn leave_room(&self, user: UserId, room: ConversationId) -> Result<bool, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        if kind(&txn, room).await? != Some(ConversationKind::Room) {
            return Err(StoreError::NotFound);
        }
        let left = txn
            .execute(
                "DELETE FROM members WHERE user_id = $1 AND conversation_id = $2",
                &[&to_sql(user.0), &to_sql(room.0)],
            )
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(left > 0)
    }

    pub async fn is_member(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT 1 FROM members WHERE user_id = $1 AND conversation_id = $2",
                &[&to_sql(user.0), &to_sql(conversation.0)],
            )
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    pub async fn memberships(&self, user: UserId) -> Result<Vec<ConversationId>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT conversation_id FROM members WHERE user_id = $1 ORDER BY conversation_id",
                &[&to_sql(user.0)],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| ConversationId(from_sql(row.get(0))))
            .collect())
    }

    pub async fn conversation_kind(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<ConversationKind>, StoreError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        kind(&txn, conversation).await
    }
}

/// What `conversation` is, `None` if there is none.
pub(super) async fn kind(
    txn: &Transaction<'_>,
    conversation: ConversationId,
) -> Result<Option<ConversationKind>, StoreError> {
    let row = txn
        .query_opt(
            "SELECT dm_low, dm_high FROM conversations WHERE id = $1",
            &[&to_sql(conversation.0)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map(
        |row| match (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) {
            (Some(low), Some(high)) => {
                ConversationKind::Dm(UserId(from_sql(low)), UserId(from_sql(high)))
            }
            _ => ConversationKind::Room,
        },
    ))
}

/// Locks `user`'s row until the transaction ends ([`StoreError::NotFound`] without such a
/// user): what counts or changes a user's memberships takes turns on it.
pub(super) async fn lock_user(txn: &Transaction<'_>, user: UserId) -> Result<(), StoreError> {
    txn.query_opt(
        "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
        &[&to_sql(user.0)],
    )
    .await
    .map_err(db_error)?
    .ok_or(StoreError::NotFound)?;
    Ok(())
}

/// Puts `user` in `conversation`, refusing with [`StoreError::TooMany`] when the user is in
/// [`MAX_MEMBERSHIPS`] conversations already; locks the user's row to count.
pub(super) async fn add(
    txn: &Transaction<'_>,
    user: UserId,
    conversation: ConversationId,
) -> Result<(), StoreError> {
    lock_user(txn, user).await?;
    let count: i64 = txn
        .query_one(
            "SELECT count(*) FROM members WHERE user_id = $1",
            &[&to_sql(user.0)],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if count as usize >= MAX_MEMBERSHIPS {
        return Err(StoreError::TooMany("conversations"));
    }
    txn.execute(
        "INSERT INTO members (user_id, conversation_id, joined_at_ms) VALUES ($1, $2, $3)",
        &[&to_sql(user.0), &to_sql(conversation.0), &to_sql(now_ms())],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}
