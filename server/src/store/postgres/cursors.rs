//! Receipt cursors on PostgreSQL: for each (user, conversation) the last seq delivered to the
//! user's devices and the last seq read. Both only move forwards whichever node writes: every
//! write is an upsert that keeps the greater value, a report past the head is clamped to the
//! head, and delivered is never below read.
//!
//! Advances go through the writer ([`super::writer`]), in queue order with the appends, so an
//! advance sees the head the appends queued before it made. An author has read their own
//! message: the writer moves an author's cursors onto
//! their message when it comes right after their read cursor (see [`super::writer`]).

use quibble_protocol::wire::{ConversationId, UserId};
use tokio_postgres::GenericClient;

use super::errors::db_error;
use super::writer::{Advance, Request};
use super::{Postgres, StoreError, from_sql, to_sql};
use crate::store::Pending;
use crate::store::{Cursors, MemberCursors};
use tokio::sync::oneshot;

impl Postgres {
    pub async fn advance_cursors(
        &self,
        user: UserId,
        conversation: ConversationId,
        delivered: u64,
        read: u64,
    ) -> Result<Cursors, StoreError> {
        let (reply, answer) = oneshot::channel();
        let advance = Advance {
            user,
            conversation,
            delivered,
            read,
        };
        self.writer()?
            .send(Request::Cursors { advance, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Pending(answer).await
    }

    pub async fn cursors(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Cursors, StoreError> {
        read_cursors(&**self.client().await?, user, conversation).await
    }

    pub async fn member_cursors(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Vec<MemberCursors>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT m.user_id, u.username, coalesce(c.delivered, 0), coalesce(c.read, 0)
                 FROM members m
                 JOIN users u ON u.id = m.user_id
                 LEFT JOIN cursors c
                   ON c.user_id = m.user_id AND c.conversation_id = m.conversation_id
                 WHERE m.conversation_id = $1 ORDER BY m.user_id LIMIT $2",
                &[
                    &to_sql(conversation.0),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| MemberCursors {
                user: UserId(from_sql(row.get(0))),
                username: row.get(1),
                cursors: to_cursors(row.get(2), row.get(3)),
            })
            .collect())
    }
}

/// The cursors stored for `(user, conversation)` (zero when none).
pub(super) async fn read_cursors(
    client: &impl GenericClient,
    user: UserId,
    conversation: ConversationId,
) -> Result<Cursors, StoreError> {
    let row = client
        .query_opt(
            "SELECT delivered, read FROM cursors WHERE user_id = $1 AND conversation_id = $2",
            &[&to_sql(user.0), &to_sql(conversation.0)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map_or_else(Cursors::default, |row| to_cursors(row.get(0), row.get(1))))
}

pub(super) fn to_cursors(delivered: i64, read: i64) -> Cursors {
    Cursors {
        delivered: from_sql(delivered),
        read: from_sql(read),
    }
}
