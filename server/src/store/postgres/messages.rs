//! Message history on PostgreSQL: appending (through the [`writer`](super::writer)), the head
//! seq, paging forwards and backwards through `(conversation, seq)`, single messages,
//! deleting one, and the deletions at or before a resume point.
//!
//! A deleted message's row stays as its tombstone (body erased, `deleted_at_ms` set), so seqs
//! stay contiguous; reads give it as [`ChatMessage::tombstone`] gives it (client id 0). Its
//! client id stays in the row, so a resend of it is still answered with the tombstone rather
//! than stored again. A deletion is one transaction that locks the message's row
//! (`FOR UPDATE`), so of two nodes deleting it at once one changes it and the other finds the
//! tombstone; an admin's deletion of someone else's message is audited in that transaction.

use std::sync::Arc;

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use tokio::sync::oneshot;
use tokio_postgres::{GenericClient, Row};

use super::audit::{lock_users, record};
use super::errors::db_error;
use super::writer::Request;
use super::{Postgres, StoreError, from_sql, now_ms, to_sql};
use crate::store::{Actor, Appended, AuditAction, Deletion, Pending, notify};

/// The columns [`to_message`] reads, in its order.
pub(super) const MESSAGE_COLUMNS: &str =
    "conversation_id, seq, author, author_name, client_id, sent_at_ms, body, deleted_at_ms";

/// A message to append, as its author sent it.
pub(super) struct Draft {
    pub conversation: ConversationId,
    pub author: UserId,
    pub author_name: String,
    pub client_id: u64,
    pub body: String,
}

impl Postgres {
    pub async fn append(
        &self,
        conversation: ConversationId,
        author: UserId,
        author_name: &str,
        client_id: u64,
        body: &str,
    ) -> Result<Appended, StoreError> {
        self.queue_append(conversation, author, author_name, client_id, body)
            .await?
            .await
    }

    pub async fn queue_append(
        &self,
        conversation: ConversationId,
        author: UserId,
        author_name: &str,
        client_id: u64,
        body: &str,
    ) -> Result<Pending<Appended>, StoreError> {
        let draft = Draft {
            conversation,
            author,
            author_name: author_name.to_owned(),
            client_id,
            body: body.to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        self.writer()?
            .send(Request::Append { draft, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(answer))
    }

    pub async fn head(&self, conversation: ConversationId) -> Result<u64, StoreError> {
        read_head(&**self.client().await?, conversation).await
    }

    pub async fn heads(
        &self,
        conversations: Vec<ConversationId>,
    ) -> Result<Vec<(ConversationId, u64)>, StoreError> {
        let ids: Vec<i64> = conversations.iter().map(|c| to_sql(c.0)).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, head FROM conversations WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(db_error)?;
        let found: std::collections::HashMap<u64, u64> = rows
            .iter()
            .map(|row| (from_sql(row.get(0)), from_sql(row.get(1))))
            .collect();
        Ok(conversations
            .into_iter()
            .map(|c| (c, found.get(&c.0).copied().unwrap_or(0)))
            .collect())
    }

    pub async fn messages_after(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ),
                &[
                    &to_sql(conversation.0),
                    &to_sql(after_seq),
                    &limit_sql(limit),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(to_message).collect())
    }

    pub async fn messages_before(
        &self,
        conversation: ConversationId,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                ),
                &[
                    &to_sql(conversation.0),
                    &to_sql(before_seq),
                    &limit_sql(limit),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().rev().map(to_message).collect())
    }

    pub async fn message(
        &self,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<ChatMessage>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq = $2"
                ),
                &[&to_sql(conversation.0), &to_sql(seq)],
            )
            .await
            .map_err(db_error)?;
        Ok(row.as_ref().map(to_message))
    }

    pub async fn delete_message(
        &self,
        conversation: ConversationId,
        seq: u64,
        moderator: Option<Actor>,
    ) -> Result<Deletion, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let row = txn
            .query_opt(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE conversation_id = $1 AND seq = $2 FOR UPDATE"
                ),
                &[&to_sql(conversation.0), &to_sql(seq)],
            )
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        let message = to_message(&row);
        let tombstone = message.tombstone();
        if message.is_deleted() {
            return Ok(Deletion {
                tombstone,
                changed: false,
            });
        }
        let now = now_ms();
        if let Some(actor) = moderator {
            // As the embedded engine: who may delete is the caller's question; the log records
            // the actor's name now (an actor that does not exist is an inconsistency).
            let by = lock_users(&txn, actor, None).await?.identity(actor)?;
            record(
                &txn,
                now,
                &by,
                AuditAction::DeleteMessage,
                &format!("{}/{seq}", conversation.0),
                None,
            )
            .await?;
        }
        txn.execute(
            "UPDATE messages SET body = '', deleted_at_ms = $3
             WHERE conversation_id = $1 AND seq = $2",
            &[&to_sql(conversation.0), &to_sql(seq), &to_sql(now)],
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        // The connection goes back before waiting for the hook's turn, and the hook is told in
        // a task of its own, so the tombstone reaches it even if this call is dropped now.
        drop(client);
        let hook = Arc::clone(&self.inner.hook);
        let told = tombstone.clone();
        let telling = tokio::spawn(async move {
            let _order = hook.order.lock().await;
            notify(&hook.call, std::slice::from_ref(&told));
        });
        if let Err(e) = telling.await {
            tracing::error!(error = %e, "telling the commit hook of a deletion failed");
        }
        Ok(Deletion {
            tombstone,
            changed: true,
        })
    }

    pub async fn deletions_up_to(
        &self,
        conversation: ConversationId,
        up_to: u64,
        window: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq FROM messages
                 WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
                   AND deleted_at_ms IS NOT NULL
                 ORDER BY seq DESC LIMIT $4",
                &[
                    &to_sql(conversation.0),
                    &to_sql(up_to.saturating_sub(window)),
                    &to_sql(up_to),
                    &limit_sql(limit),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().rev().map(|row| from_sql(row.get(0))).collect())
    }
}

/// The head seq of `conversation` (0 if it has no messages or does not exist).
pub(super) async fn read_head(
    client: &impl GenericClient,
    conversation: ConversationId,
) -> Result<u64, StoreError> {
    let row = client
        .query_opt(
            "SELECT head FROM conversations WHERE id = $1",
            &[&to_sql(conversation.0)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map_or(0, |row| from_sql(row.get(0))))
}

/// Up to `limit` messages of `conversation` with seq > `after_seq`, ascending.
pub(super) async fn read_messages_after(
    client: &impl GenericClient,
    conversation: ConversationId,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<ChatMessage>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            &[
                &to_sql(conversation.0),
                &to_sql(after_seq),
                &limit_sql(limit),
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(rows.iter().map(to_message).collect())
}

/// A message from a row of [`MESSAGE_COLUMNS`]; a deleted one as its tombstone.
pub(super) fn to_message(row: &Row) -> ChatMessage {
    let message = ChatMessage {
        conversation: ConversationId(from_sql(row.get(0))),
        seq: from_sql(row.get(1)),
        author: UserId(from_sql(row.get(2))),
        author_name: row.get(3),
        client_id: from_sql(row.get(4)),
        sent_at_ms: from_sql(row.get(5)),
        body: row.get(6),
    };
    match row.get::<_, Option<i64>>(7) {
        Some(_) => message.tombstone(),
        None => message,
    }
}

/// A page size as SQL's LIMIT.
fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
