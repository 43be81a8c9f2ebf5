//! Rooms on PostgreSQL: creation (names unique by look-alike key, by the `name_key`
//! constraint, so two nodes creating one name race safely), listing in pages of ascending id
//! with each room's head, and lookup. Rooms and DMs share the conversation id space.

use quibble_protocol::wire::{ConversationId, UserId};
use tokio_postgres::Row;

use super::errors::{db_error, unique_violation};
use super::{Postgres, StoreError, from_sql, membership, now_ms, to_sql};
use crate::auth::room_name_key;
use crate::store::{Retention, Room, RoomEntry, RoomPage};

impl Postgres {
    pub async fn create_room(&self, name: &str, created_by: UserId) -> Result<Room, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        // The creator's row first, as every write that counts a user's memberships locks it,
        // so two of their room creations take turns instead of deadlocking.
        membership::lock_user(&txn, created_by).await?;
        let row = txn
            .query_one(
                "INSERT INTO conversations (name, name_key, created_by, created_at_ms)
                 VALUES ($1, $2, $3, $4) RETURNING id, name, created_by, created_at_ms",
                &[
                    &name,
                    &room_name_key(name),
                    &to_sql(created_by.0),
                    &to_sql(now_ms()),
                ],
            )
            .await
            .map_err(|e| match unique_violation(&e) {
                Some(_) => StoreError::NameTaken,
                None => db_error(e),
            })?;
        let room = to_room(&row);
        membership::add(&txn, created_by, room.id).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(room)
    }

    pub async fn rooms_page(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<RoomPage, StoreError> {
        let client = self.client().await?;
        // One more than asked, to know whether a next page exists.
        let rows = client
            .query(
                "SELECT id, name, created_by, created_at_ms, head, retention_max_age_ms,
                        retention_max_messages FROM conversations
                 WHERE name IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
                &[
                    &to_sql(after.map_or(0, |a| a.0)),
                    &(limit.saturating_add(1).min(i64::MAX as usize) as i64),
                ],
            )
            .await
            .map_err(db_error)?;
        let more = rows.len() > limit;
        let rooms: Vec<RoomEntry> = rows
            .iter()
            .take(limit)
            .map(|row| RoomEntry {
                room: to_room(row),
                head_seq: from_sql(row.get(4)),
                retention: Retention {
                    max_age_ms: row.get::<_, Option<i64>>(5).map(from_sql),
                    max_messages: row.get::<_, Option<i64>>(6).map(from_sql),
                },
            })
            .collect();
        let next = more.then(|| rooms.last().map(|e| e.room.id)).flatten();
        Ok(RoomPage { rooms, next })
    }

    pub async fn room(&self, id: ConversationId) -> Result<Option<Room>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, name, created_by, created_at_ms FROM conversations
                 WHERE id = $1 AND name IS NOT NULL",
                &[&to_sql(id.0)],
            )
            .await
            .map_err(db_error)?;
        Ok(row.as_ref().map(to_room))
    }
}

/// A room from a row of `id, name, created_by, created_at_ms`.
fn to_room(row: &Row) -> Room {
    Room {
        id: ConversationId(from_sql(row.get(0))),
        name: row.get(1),
        created_by: UserId(from_sql(row.get::<_, Option<i64>>(2).unwrap_or(0))),
        created_at_ms: from_sql(row.get(3)),
    }
}
