//! The conversation list on PostgreSQL: for each conversation a user is in, its title, head,
//! the user's cursors (and a DM peer's), the unread count and the last message, in one query.
//!
//! The rules are the embedded engine's (see `store::redb::summaries`): unread counts the
//! messages after the read cursor, not deleted, written neither by the user nor by someone they
//! block,
//! looking at most [`UNREAD_SCAN`] messages past the cursor and counting any beyond as unread;
//! a blocked author's last message is a hidden marker; a blocked DM peer's cursors read zero.

use std::cmp::Reverse;
use std::collections::HashSet;

use quibble_protocol::wire::{ConversationId, UserId};
use tokio_postgres::{GenericClient, Row};

use super::blocks::blocked_ids;
use super::cursors::to_cursors;
use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, to_sql};
use crate::store::{ConversationKind, Cursors, LastMessage, PREVIEW_CHARS, Summary, UNREAD_SCAN};

/// One row per membership of $1 (optionally only conversation $2), with everything a summary
/// shows; the unread walk is bounded by [`UNREAD_SCAN`] ($3).
const SUMMARIES: &str = "
    SELECT c.id, c.name, c.dm_low, c.dm_high, c.head, m.joined_at_ms,
           coalesce(mine.delivered, 0), coalesce(mine.read, 0),
           peer.username, coalesce(theirs.delivered, 0), coalesce(theirs.read, 0),
           last.author, last.author_name, last.body, last.sent_at_ms,
           greatest(c.head - (coalesce(mine.read, 0) + $3), 0) + (
               SELECT count(*) FROM messages x
               WHERE x.conversation_id = c.id
                 AND x.seq > coalesce(mine.read, 0)
                 AND x.seq <= least(c.head, coalesce(mine.read, 0) + $3)
                 AND x.author <> $1
                 AND x.deleted_at_ms IS NULL
                 AND x.author NOT IN (SELECT blocked FROM blocks WHERE blocker = $1)
           )
    FROM members m
    JOIN conversations c ON c.id = m.conversation_id
    LEFT JOIN cursors mine ON mine.user_id = $1 AND mine.conversation_id = c.id
    LEFT JOIN users peer
      ON c.dm_low IS NOT NULL
     AND peer.id = CASE WHEN c.dm_low = $1 THEN c.dm_high ELSE c.dm_low END
    LEFT JOIN cursors theirs ON theirs.user_id = peer.id AND theirs.conversation_id = c.id
    LEFT JOIN messages last ON last.conversation_id = c.id AND last.seq = c.head
    WHERE m.user_id = $1 AND ($2::bigint IS NULL OR m.conversation_id = $2)";

impl Postgres {
    pub async fn summaries(&self, user: UserId) -> Result<Vec<Summary>, StoreError> {
        Ok(self.summaries_and_blocks(user).await?.0)
    }

    pub async fn summaries_and_blocks(
        &self,
        user: UserId,
    ) -> Result<(Vec<Summary>, Vec<UserId>), StoreError> {
        let mut client = self.client().await?;
        let txn = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_error)?;
        read_summaries_and_blocks(&*txn, user).await
    }

    pub async fn summary(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<Summary>, StoreError> {
        let mut client = self.client().await?;
        let txn = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_error)?;
        let blocked = blocked_set(&*txn, user).await?;
        let rows = query(&*txn, user, Some(conversation)).await?;
        rows.first()
            .map(|row| to_summary(row, user, &blocked))
            .transpose()
    }
}

/// The user's summaries, most recently active first, and whom they block (ascending).
pub(super) async fn read_summaries_and_blocks(
    client: &impl GenericClient,
    user: UserId,
) -> Result<(Vec<Summary>, Vec<UserId>), StoreError> {
    let blocked_list = blocked_ids(client, user).await?;
    let blocked: HashSet<u64> = blocked_list.iter().map(|u| u.0).collect();
    let rows = query(client, user, None).await?;
    let mut list = rows
        .iter()
        .map(|row| to_summary(row, user, &blocked))
        .collect::<Result<Vec<_>, _>>()?;
    list.sort_by_key(|s| Reverse((s.activity_ms(), s.conversation)));
    Ok((list, blocked_list))
}

async fn blocked_set(
    client: &impl GenericClient,
    user: UserId,
) -> Result<HashSet<u64>, StoreError> {
    Ok(blocked_ids(client, user)
        .await?
        .iter()
        .map(|u| u.0)
        .collect())
}

async fn query(
    client: &impl GenericClient,
    user: UserId,
    only: Option<ConversationId>,
) -> Result<Vec<Row>, StoreError> {
    client
        .query(
            SUMMARIES,
            &[
                &to_sql(user.0),
                &only.map(|c| to_sql(c.0)),
                &to_sql(UNREAD_SCAN),
            ],
        )
        .await
        .map_err(db_error)
}

fn to_summary(row: &Row, user: UserId, blocked: &HashSet<u64>) -> Result<Summary, StoreError> {
    let conversation = ConversationId(from_sql(row.get(0)));
    let head_seq = from_sql(row.get(4));
    let (kind, title, peer_cursors) = match (
        row.get::<_, Option<String>>(1),
        row.get::<_, Option<i64>>(2),
        row.get::<_, Option<i64>>(3),
    ) {
        (Some(name), _, _) => (ConversationKind::Room, name, None),
        (None, Some(low), Some(high)) => {
            let (low, high) = (UserId(from_sql(low)), UserId(from_sql(high)));
            let peer = if low == user { high } else { low };
            let title: Option<String> = row.get(8);
            let title = title
                .ok_or_else(|| StoreError::Corrupt(format!("DM member {} is no user", peer.0)))?;
            let cursors = if blocked.contains(&peer.0) {
                Cursors::default()
            } else {
                to_cursors(row.get(9), row.get(10))
            };
            (ConversationKind::Dm(low, high), title, Some(cursors))
        }
        _ => {
            return Err(StoreError::Corrupt(format!(
                "conversation {} is neither a room nor a DM",
                conversation.0
            )));
        }
    };
    let last = match row.get::<_, Option<i64>>(11) {
        Some(author) if head_seq > 0 => {
            let author = from_sql(author);
            let sent_at_ms = from_sql(row.get(14));
            Some(if blocked.contains(&author) {
                // The hidden marker's fields (see `ChatMessage::hidden`).
                LastMessage {
                    seq: head_seq,
                    author: UserId::NOBODY,
                    author_name: String::new(),
                    preview: String::new(),
                    sent_at_ms,
                }
            } else {
                let body: String = row.get(13);
                LastMessage {
                    seq: head_seq,
                    author: UserId(author),
                    author_name: row.get(12),
                    preview: body.chars().take(PREVIEW_CHARS).collect(),
                    sent_at_ms,
                }
            })
        }
        _ => None,
    };
    Ok(Summary {
        conversation,
        kind,
        title,
        head_seq,
        cursors: to_cursors(row.get(6), row.get(7)),
        peer_cursors,
        unread: from_sql(row.get(15)),
        last,
        joined_at_ms: from_sql(row.get(5)),
    })
}
