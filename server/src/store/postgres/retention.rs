//! Per-room retention on PostgreSQL (the rule and its design: `crate::store::retention`).
//!
//! The setting and `retained_through` are columns of the room's `conversations` row
//! (migration 5). A step ([`Postgres::retain`]) is one transaction: it reads the setting and
//! the head, finds where the age rule stops (one bounded index range), and turns the due live
//! messages into tombstones with one `UPDATE … WHERE deleted_at_ms IS NULL RETURNING`, as
//! [`Postgres::delete_message`] would one by one. That `WHERE` is re-checked on rows another
//! node changed meanwhile, so when several nodes sweep one room each tombstone is made (and told
//! to a commit hook) once. `retained_through` only moves forwards (`GREATEST`). The tombstones
//! reach this node's commit hook after the commit, under [`super::Hook::order`], as a
//! deletion's do.

use std::sync::Arc;

use quibble_protocol::wire::ConversationId;

use super::audit::{lock_users, record};
use super::errors::db_error;
use super::messages::{MESSAGE_COLUMNS, to_message};
use super::{Postgres, StoreError, from_sql, now_ms, to_sql};
use crate::store::retention::{
    MAX_RETAIN_BATCH, Retained, Retention, age_cutoff, describe, retain_through,
};
use crate::store::{Actor, AuditAction, notify};

/// A setting from its two nullable columns.
fn from_columns(max_age_ms: Option<i64>, max_messages: Option<i64>) -> Retention {
    Retention {
        max_age_ms: max_age_ms.map(from_sql),
        max_messages: max_messages.map(from_sql),
    }
}

impl Postgres {
    pub async fn set_retention(
        &self,
        actor: Actor,
        room: ConversationId,
        retention: Retention,
    ) -> Result<(), StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let by = lock_users(&txn, actor, None).await?.identity(actor)?;
        let changed = txn
            .execute(
                "UPDATE conversations SET retention_max_age_ms = $2, retention_max_messages = $3
                 WHERE id = $1 AND name IS NOT NULL",
                &[
                    &to_sql(room.0),
                    &retention.max_age_ms.map(to_sql),
                    &retention.max_messages.map(to_sql),
                ],
            )
            .await
            .map_err(db_error)?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        record(
            &txn,
            now_ms(),
            &by,
            AuditAction::SetRetention,
            &room.0.to_string(),
            Some(&describe(retention)),
        )
        .await?;
        txn.commit().await.map_err(db_error)
    }

    pub async fn retention(&self, room: ConversationId) -> Result<Retention, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT retention_max_age_ms, retention_max_messages FROM conversations
                 WHERE id = $1 AND name IS NOT NULL",
                &[&to_sql(room.0)],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map_or_else(Retention::default, |row| {
            from_columns(row.get(0), row.get(1))
        }))
    }

    pub async fn retention_page(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, Retention)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, retention_max_age_ms, retention_max_messages FROM conversations
                 WHERE id > $1
                   AND (retention_max_age_ms IS NOT NULL OR retention_max_messages IS NOT NULL)
                 ORDER BY id LIMIT $2",
                &[
                    &to_sql(after.map_or(0, |a| a.0)),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    ConversationId(from_sql(row.get(0))),
                    from_columns(row.get(1), row.get(2)),
                )
            })
            .collect())
    }

    pub async fn retain(
        &self,
        room: ConversationId,
        now: u64,
        limit: usize,
    ) -> Result<Retained, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let Some(row) = txn
            .query_opt(
                "SELECT retention_max_age_ms, retention_max_messages, retained_through, head
                 FROM conversations WHERE id = $1 AND name IS NOT NULL",
                &[&to_sql(room.0)],
            )
            .await
            .map_err(db_error)?
        else {
            return Ok(Retained::default());
        };
        let retention = from_columns(row.get(0), row.get(1));
        let through = from_sql(row.get(2));
        let head = from_sql(row.get(3));
        if retention.is_none() {
            return Ok(Retained {
                head,
                ..Retained::default()
            });
        }
        let limit = limit.clamp(1, MAX_RETAIN_BATCH) as u64;
        let window_end = head.min(through.saturating_add(limit));
        let first_young = match retention.max_age_ms.map(|age| age_cutoff(age, now)) {
            None => None,
            // Nothing can be that old yet.
            Some(None) => Some(through.saturating_add(1)),
            Some(Some(cutoff)) => txn
                .query_opt(
                    "SELECT seq FROM messages
                     WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 AND sent_at_ms > $4
                     ORDER BY seq LIMIT 1",
                    &[
                        &to_sql(room.0),
                        &to_sql(through),
                        &to_sql(window_end),
                        &to_sql(cutoff),
                    ],
                )
                .await
                .map_err(db_error)?
                .map(|row| from_sql(row.get(0))),
        };
        let end = retain_through(retention, through, head, limit, first_young);
        if end == through {
            return Ok(Retained {
                head,
                ..Retained::default()
            });
        }
        let rows = txn
            .query(
                &format!(
                    "UPDATE messages SET body = '', deleted_at_ms = $4
                     WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
                       AND deleted_at_ms IS NULL
                     RETURNING {MESSAGE_COLUMNS}"
                ),
                &[
                    &to_sql(room.0),
                    &to_sql(through),
                    &to_sql(end),
                    &to_sql(now_ms()),
                ],
            )
            .await
            .map_err(db_error)?;
        txn.execute(
            "UPDATE conversations SET retained_through = GREATEST(retained_through, $2)
             WHERE id = $1",
            &[&to_sql(room.0), &to_sql(end)],
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        drop(client);
        let mut tombstones: Vec<_> = rows.iter().map(to_message).collect();
        tombstones.sort_by_key(|m| m.seq);
        if !tombstones.is_empty() {
            // As a deletion: in a task of its own, so the hook hears even if this call is
            // dropped now.
            let hook = Arc::clone(&self.inner.hook);
            let told = tombstones.clone();
            let telling = tokio::spawn(async move {
                let _order = hook.order.lock().await;
                notify(&hook.call, &told);
            });
            if let Err(e) = telling.await {
                tracing::error!(error = %e, "telling the commit hook of retained messages failed");
            }
        }
        Ok(Retained {
            tombstones,
            head,
            more: end == through.saturating_add(limit) && end < head,
        })
    }
}
