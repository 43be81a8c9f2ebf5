//! Friendships, friend requests and the DM of each pair, on PostgreSQL.
//!
//! A pair's state is stored both ways (`friends`: as each user sees it), written in one
//! transaction after locking both users' rows (lower id first), so requests, acceptances and
//! blocks about one pair on several nodes take turns, and each user's cap
//! ([`MAX_FRIEND_ENTRIES`]) is counted under the lock. Adding someone who asked first accepts;
//! removing declines, cancels or unfriends, whichever applies.
//!
//! A DM is an ordinary conversation (`dm_low`, `dm_high` set, unique per pair) made when a pair
//! first becomes friends; both users are members for good, and befriending again reuses it.

use quibble_protocol::wire::{ConversationId, UserId};
use tokio_postgres::GenericClient;

use super::blocks::{either_blocks, lock_pair};
use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, membership, now_ms, to_sql};
use crate::store::{Added, FriendEntry, FriendState, MAX_FRIEND_ENTRIES, Removed};

impl Postgres {
    pub async fn add_friend(&self, user: UserId, other: UserId) -> Result<Added, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        if !lock_pair(&*txn, user, other).await? {
            return Err(StoreError::NotFound);
        }
        if either_blocks(&*txn, user, other).await? {
            return Err(StoreError::Blocked);
        }
        let existing_dm = dm(&*txn, user, other).await?;
        let added = match state(&*txn, user, other).await? {
            Some(FriendState::Outgoing) => return Ok(Added::AlreadyRequested),
            Some(FriendState::Friends) => {
                let dm = existing_dm
                    .ok_or_else(|| StoreError::Corrupt("friends without a DM".into()))?;
                return Ok(Added::AlreadyFriends(dm));
            }
            Some(FriendState::Incoming) => {
                let dm = match existing_dm {
                    Some(dm) => dm,
                    None => {
                        let (low, high) = pair(user, other);
                        let id: i64 = txn
                            .query_one(
                                "INSERT INTO conversations (dm_low, dm_high, created_at_ms)
                                 VALUES ($1, $2, $3) RETURNING id",
                                &[&to_sql(low), &to_sql(high), &to_sql(now_ms())],
                            )
                            .await
                            .map_err(db_error)?
                            .get(0);
                        let id = ConversationId(from_sql(id));
                        membership::add(&txn, user, id).await?;
                        membership::add(&txn, other, id).await?;
                        id
                    }
                };
                set(
                    &*txn,
                    user,
                    other,
                    FriendState::Friends,
                    FriendState::Friends,
                )
                .await?;
                Added::Accepted(dm)
            }
            None => {
                check_room(&*txn, user).await?;
                check_room(&*txn, other).await?;
                set(
                    &*txn,
                    user,
                    other,
                    FriendState::Outgoing,
                    FriendState::Incoming,
                )
                .await?;
                Added::Requested
            }
        };
        txn.commit().await.map_err(db_error)?;
        Ok(added)
    }

    pub async fn remove_friend(&self, user: UserId, other: UserId) -> Result<Removed, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        lock_pair(&*txn, user, other).await?;
        let removed = match state(&*txn, user, other).await? {
            None => return Ok(Removed::Nothing),
            Some(FriendState::Incoming) => Removed::Declined,
            Some(FriendState::Outgoing) => Removed::Cancelled,
            Some(FriendState::Friends) => Removed::Unfriended,
        };
        txn.execute(
            "DELETE FROM friends WHERE (user_id, other_id) IN (($1, $2), ($2, $1))",
            &[&to_sql(user.0), &to_sql(other.0)],
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(removed)
    }

    pub async fn friend_state(
        &self,
        user: UserId,
        other: UserId,
    ) -> Result<Option<FriendState>, StoreError> {
        state(&**self.client().await?, user, other).await
    }

    pub async fn friends(&self, user: UserId) -> Result<Vec<FriendEntry>, StoreError> {
        read_friends(&**self.client().await?, user).await
    }

    pub async fn dm_between(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<Option<ConversationId>, StoreError> {
        dm(&**self.client().await?, a, b).await
    }
}

/// A user's friends and requests, ascending by the other's id, with the pair's DM if any.
pub(super) async fn read_friends(
    client: &impl GenericClient,
    user: UserId,
) -> Result<Vec<FriendEntry>, StoreError> {
    let rows = client
        .query(
            "SELECT f.other_id, u.username, f.state, c.id
             FROM friends f
             JOIN users u ON u.id = f.other_id
             LEFT JOIN conversations c
               ON c.dm_low = LEAST(f.user_id, f.other_id)
              AND c.dm_high = GREATEST(f.user_id, f.other_id)
             WHERE f.user_id = $1 ORDER BY f.other_id LIMIT $2",
            &[&to_sql(user.0), &(MAX_FRIEND_ENTRIES as i64)],
        )
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(FriendEntry {
                user: UserId(from_sql(row.get(0))),
                username: row.get(1),
                state: to_state(row.get(2))?,
                dm: row
                    .get::<_, Option<i64>>(3)
                    .map(|id| ConversationId(from_sql(id))),
            })
        })
        .collect()
}

/// The pair's DM, if it was ever made.
async fn dm(
    client: &impl GenericClient,
    a: UserId,
    b: UserId,
) -> Result<Option<ConversationId>, StoreError> {
    let (low, high) = pair(a, b);
    let row = client
        .query_opt(
            "SELECT id FROM conversations WHERE dm_low = $1 AND dm_high = $2",
            &[&to_sql(low), &to_sql(high)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map(|row| ConversationId(from_sql(row.get(0)))))
}

/// How `user` stands with `other`.
async fn state(
    client: &impl GenericClient,
    user: UserId,
    other: UserId,
) -> Result<Option<FriendState>, StoreError> {
    let row = client
        .query_opt(
            "SELECT state FROM friends WHERE user_id = $1 AND other_id = $2",
            &[&to_sql(user.0), &to_sql(other.0)],
        )
        .await
        .map_err(db_error)?;
    row.map(|row| to_state(row.get(0))).transpose()
}

/// Writes the pair's state both ways.
async fn set(
    client: &impl GenericClient,
    user: UserId,
    other: UserId,
    seen_by_user: FriendState,
    seen_by_other: FriendState,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO friends (user_id, other_id, state) VALUES ($1, $2, $3), ($2, $1, $4)
             ON CONFLICT (user_id, other_id) DO UPDATE SET state = EXCLUDED.state",
            &[
                &to_sql(user.0),
                &to_sql(other.0),
                &from_state(seen_by_user),
                &from_state(seen_by_other),
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Refuses with [`StoreError::TooMany`] when `user` has no room for one more friend entry.
async fn check_room(client: &impl GenericClient, user: UserId) -> Result<(), StoreError> {
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM friends WHERE user_id = $1",
            &[&to_sql(user.0)],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if count as usize >= MAX_FRIEND_ENTRIES {
        return Err(StoreError::TooMany("friends and requests"));
    }
    Ok(())
}

/// The pair's key: lower user id first.
fn pair(a: UserId, b: UserId) -> (u64, u64) {
    (a.0.min(b.0), a.0.max(b.0))
}

fn from_state(state: FriendState) -> i16 {
    match state {
        FriendState::Friends => 0,
        FriendState::Outgoing => 1,
        FriendState::Incoming => 2,
    }
}

fn to_state(stored: i16) -> Result<FriendState, StoreError> {
    match stored {
        0 => Ok(FriendState::Friends),
        1 => Ok(FriendState::Outgoing),
        2 => Ok(FriendState::Incoming),
        other => Err(StoreError::Corrupt(format!("friend state {other}"))),
    }
}
