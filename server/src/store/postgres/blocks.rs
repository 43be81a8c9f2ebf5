//! Blocks on PostgreSQL: who blocks whom (at most [`MAX_BLOCKS`] each), and the end of any
//! friendship or request between the two when a block is made.
//!
//! A block, like a friend request, locks both users' rows (lower id first, as every write
//! about a pair does, so two nodes never deadlock) before checking, so a block and a request
//! racing on two nodes cannot leave a request behind, and the cap is counted under the lock.

use quibble_protocol::wire::UserId;
use tokio_postgres::GenericClient;

use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, now_ms, to_sql};
use crate::store::{BlockEntry, Blocked, MAX_BLOCKS};

impl Postgres {
    pub async fn block(&self, blocker: UserId, blocked: UserId) -> Result<Blocked, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        if !lock_pair(&*txn, blocker, blocked).await? {
            return Err(StoreError::NotFound);
        }
        let exists = txn
            .query_opt(
                "SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2",
                &[&to_sql(blocker.0), &to_sql(blocked.0)],
            )
            .await
            .map_err(db_error)?;
        if exists.is_some() {
            return Ok(Blocked {
                changed: false,
                ended_friendship: false,
            });
        }
        let count: i64 = txn
            .query_one(
                "SELECT count(*) FROM blocks WHERE blocker = $1",
                &[&to_sql(blocker.0)],
            )
            .await
            .map_err(db_error)?
            .get(0);
        if count as usize >= MAX_BLOCKS {
            return Err(StoreError::TooMany("blocked users"));
        }
        txn.execute(
            "INSERT INTO blocks (blocker, blocked, since_ms) VALUES ($1, $2, $3)",
            &[&to_sql(blocker.0), &to_sql(blocked.0), &to_sql(now_ms())],
        )
        .await
        .map_err(db_error)?;
        let ended = txn
            .execute(
                "DELETE FROM friends WHERE (user_id, other_id) IN (($1, $2), ($2, $1))",
                &[&to_sql(blocker.0), &to_sql(blocked.0)],
            )
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(Blocked {
            changed: true,
            ended_friendship: ended > 0,
        })
    }

    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, StoreError> {
        let client = self.write_client().await?;
        let removed = client
            .execute(
                "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2",
                &[&to_sql(blocker.0), &to_sql(blocked.0)],
            )
            .await
            .map_err(db_error)?;
        Ok(removed > 0)
    }

    pub async fn blocks(&self, blocker: UserId, blocked: UserId) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2",
                &[&to_sql(blocker.0), &to_sql(blocked.0)],
            )
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    pub async fn blocked_users(&self, blocker: UserId) -> Result<Vec<UserId>, StoreError> {
        blocked_ids(&**self.client().await?, blocker).await
    }

    pub async fn block_list(&self, blocker: UserId) -> Result<Vec<BlockEntry>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT b.blocked, u.username, b.since_ms
                 FROM blocks b JOIN users u ON u.id = b.blocked
                 WHERE b.blocker = $1 ORDER BY b.blocked LIMIT $2",
                &[&to_sql(blocker.0), &(MAX_BLOCKS as i64)],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| BlockEntry {
                user: UserId(from_sql(row.get(0))),
                username: row.get(1),
                since_ms: from_sql(row.get(2)),
            })
            .collect())
    }
}

/// Whom `blocker` blocks, ascending.
pub(super) async fn blocked_ids(
    client: &impl GenericClient,
    blocker: UserId,
) -> Result<Vec<UserId>, StoreError> {
    let rows = client
        .query(
            "SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked LIMIT $2",
            &[&to_sql(blocker.0), &(MAX_BLOCKS as i64)],
        )
        .await
        .map_err(db_error)?;
    Ok(rows
        .iter()
        .map(|row| UserId(from_sql(row.get(0))))
        .collect())
}

/// Whether either of the two blocks the other.
pub(super) async fn either_blocks(
    client: &impl GenericClient,
    a: UserId,
    b: UserId,
) -> Result<bool, StoreError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM blocks WHERE (blocker, blocked) IN (($1, $2), ($2, $1))",
            &[&to_sql(a.0), &to_sql(b.0)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.is_some())
}

/// Locks both users' rows, lower id first; false if either does not exist.
pub(super) async fn lock_pair(
    client: &impl GenericClient,
    a: UserId,
    b: UserId,
) -> Result<bool, StoreError> {
    let mut ids = [to_sql(a.0), to_sql(b.0)];
    ids.sort_unstable();
    let ids = ids.to_vec();
    let locked = client
        .query(
            "SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            &[&ids],
        )
        .await
        .map_err(db_error)?;
    let wanted = if a == b { 1 } else { 2 };
    Ok(locked.len() == wanted)
}
