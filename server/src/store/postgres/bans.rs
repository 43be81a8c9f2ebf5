//! User bans on PostgreSQL: one `bans` row per banned user (reason, when, until when, by whom),
//! written with the revocation of all the user's sessions and an audit entry in ONE
//! transaction, so a ban is never half applied.
//!
//! Several nodes: banning and unbanning lock the actor's and the target's user rows first
//! ([`super::audit::lock_users`]), then check that the actor is (still) an admin and the target
//! is not one; a role change locks the same rows, and a new session locks the user's row
//! `FOR SHARE` and checks for a ban in its own transaction ([`super::accounts`]). So whichever
//! commits first wins on any node: a session created before a ban is revoked by it, one after
//! it is refused, and a promotion racing a ban either makes the ban [`StoreError::TargetIsAdmin`]
//! or comes after it. A ban with an end stops counting once that moment passes, by itself:
//! every read compares it with the time given (or the node's clock), and the row stays until it
//! is replaced or lifted.

use quibble_protocol::wire::UserId;
use tokio_postgres::Row;

use super::audit::{corrupt, lock_users, record};
use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, now_ms, to_sql, until_ms};
use crate::store::{Actor, AuditAction, Ban, Role, Unbanned};

/// The columns [`to_ban`] reads (`b`: bans, `u`: users), in its order.
const BAN_COLUMNS: &str = "b.user_id, u.username, b.reason, b.created_at_ms, b.until_ms, b.by_name";

impl Postgres {
    pub async fn ban_user(
        &self,
        actor: Actor,
        username: &str,
        reason: &str,
        duration_ms: Option<u64>,
    ) -> Result<Ban, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let locked = lock_users(&txn, actor, Some(username)).await?;
        let by = locked.require_admin(actor)?;
        let target = locked.target.ok_or(StoreError::NotFound)?;
        if target.role == Role::Admin {
            return Err(StoreError::TargetIsAdmin);
        }
        let now = now_ms();
        let until_ms = until_ms(now, duration_ms);
        txn.execute(
            "INSERT INTO bans (user_id, reason, created_at_ms, until_ms, by_id, by_name)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id) DO UPDATE SET reason = EXCLUDED.reason,
                 created_at_ms = EXCLUDED.created_at_ms, until_ms = EXCLUDED.until_ms,
                 by_id = EXCLUDED.by_id, by_name = EXCLUDED.by_name",
            &[
                &to_sql(target.id.0),
                &reason,
                &to_sql(now),
                &until_ms.map(to_sql),
                &by.0.map(|id| to_sql(id.0)),
                &by.1,
            ],
        )
        .await
        .map_err(db_error)?;
        txn.execute(
            "DELETE FROM sessions WHERE user_id = $1",
            &[&to_sql(target.id.0)],
        )
        .await
        .map_err(db_error)?;
        record(
            &txn,
            now,
            &by,
            AuditAction::Ban,
            &target.username,
            Some(reason),
        )
        .await?;
        txn.commit().await.map_err(db_error)?;
        Ok(Ban {
            user: target.id,
            username: target.username,
            reason: reason.to_owned(),
            created_at_ms: now,
            until_ms,
            by: by.1,
        })
    }

    pub async fn unban_user(&self, actor: Actor, username: &str) -> Result<Unbanned, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let locked = lock_users(&txn, actor, Some(username)).await?;
        let by = locked.require_admin(actor)?;
        let target = locked.target.ok_or(StoreError::NotFound)?;
        let now = now_ms();
        // The row goes whether or not it still counts; only lifting an active ban is audited.
        let was_active = txn
            .query_opt(
                "DELETE FROM bans WHERE user_id = $1 RETURNING until_ms",
                &[&to_sql(target.id.0)],
            )
            .await
            .map_err(db_error)?
            .map(|row| row.try_get::<_, Option<i64>>(0).map_err(corrupt))
            .transpose()?
            .is_some_and(|until| until.is_none_or(|until| from_sql(until) > now));
        if was_active {
            record(&txn, now, &by, AuditAction::Unban, &target.username, None).await?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(Unbanned {
            user: target.id,
            username: target.username,
            changed: was_active,
        })
    }

    pub async fn active_bans(&self, now_ms: u64, limit: usize) -> Result<Vec<Ban>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {BAN_COLUMNS} FROM bans b JOIN users u ON u.id = b.user_id
                     WHERE b.until_ms IS NULL OR b.until_ms > $1
                     ORDER BY b.user_id LIMIT $2"
                ),
                &[&to_sql(now_ms), &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(to_ban).collect()
    }

    pub async fn ban_of(&self, user: UserId, now_ms: u64) -> Result<Option<Ban>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {BAN_COLUMNS} FROM bans b JOIN users u ON u.id = b.user_id
                     WHERE b.user_id = $1 AND (b.until_ms IS NULL OR b.until_ms > $2)"
                ),
                &[&to_sql(user.0), &to_sql(now_ms)],
            )
            .await
            .map_err(db_error)?;
        row.as_ref().map(to_ban).transpose()
    }
}

/// A ban from a row of [`BAN_COLUMNS`].
fn to_ban(row: &Row) -> Result<Ban, StoreError> {
    Ok(Ban {
        user: UserId(from_sql(row.try_get(0).map_err(corrupt)?)),
        username: row.try_get(1).map_err(corrupt)?,
        reason: row.try_get(2).map_err(corrupt)?,
        created_at_ms: from_sql(row.try_get(3).map_err(corrupt)?),
        until_ms: row
            .try_get::<_, Option<i64>>(4)
            .map_err(corrupt)?
            .map(from_sql),
        by: row.try_get(5).map_err(corrupt)?,
    })
}
