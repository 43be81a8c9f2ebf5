//! IP bans on PostgreSQL: addresses and CIDR ranges, IPv4 and IPv6, each with a reason, who
//! added it and an optional end (`ip_bans`, migration 2), added and removed with an audit entry
//! in ONE transaction.
//!
//! A network is stored under its canonical text (truncated to its prefix: `10.1.2.3/8` is
//! `10.0.0.0/8`), the primary key, so one range has one row on any node. A ban with an end
//! stops counting once it passes ([`Postgres::active_ip_bans`] leaves it out); the row stays
//! until removed or replaced, and expired rows are dropped when the table is full.
//!
//! Several nodes: adding and removing lock the actor's user row first (so a demotion on another
//! node either comes before, and the action is [`StoreError::NotAdmin`], or after), then take
//! the table's `SHARE ROW EXCLUSIVE` lock, which only one writer of `ip_bans` holds at a time
//! (readers are not blocked), so the [`MAX_IP_BANS`] cap is counted and kept under the lock:
//! two nodes adding the last free row at once cannot both succeed. The rows are counted by a
//! trigger into `meta` (migration 4), so checking the cap does not walk the table.

use ipnet::IpNet;

use super::audit::{corrupt, lock_users, record};
use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, now_ms, to_sql, until_ms};
use crate::store::{Actor, AuditAction, IpBan, MAX_IP_BANS};

impl Postgres {
    pub async fn add_ip_ban(
        &self,
        actor: Actor,
        network: IpNet,
        reason: &str,
        duration_ms: Option<u64>,
    ) -> Result<IpBan, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let by = lock_users(&txn, actor, None).await?.require_admin(actor)?;
        lock_table(&txn).await?;
        let network = network.trunc();
        let key = network.to_string();
        let now = now_ms();
        let exists = txn
            .query_opt("SELECT 1 FROM ip_bans WHERE network = $1", &[&key])
            .await
            .map_err(db_error)?
            .is_some();
        if !exists && count(&txn).await? >= MAX_IP_BANS {
            // Expired rows mean nothing: make room from them first.
            txn.execute(
                "DELETE FROM ip_bans WHERE until_ms IS NOT NULL AND until_ms <= $1",
                &[&to_sql(now)],
            )
            .await
            .map_err(db_error)?;
            if count(&txn).await? >= MAX_IP_BANS {
                // The embedded engine keeps the purge of expired rows with the refusal.
                txn.commit().await.map_err(db_error)?;
                return Err(StoreError::TooMany("IP bans"));
            }
        }
        let until_ms = until_ms(now, duration_ms);
        txn.execute(
            "INSERT INTO ip_bans (network, reason, created_at_ms, until_ms, by_id, by_name)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (network) DO UPDATE SET reason = EXCLUDED.reason,
                 created_at_ms = EXCLUDED.created_at_ms, until_ms = EXCLUDED.until_ms,
                 by_id = EXCLUDED.by_id, by_name = EXCLUDED.by_name",
            &[
                &key,
                &reason,
                &to_sql(now),
                &until_ms.map(to_sql),
                &by.0.map(|id| to_sql(id.0)),
                &by.1,
            ],
        )
        .await
        .map_err(db_error)?;
        record(&txn, now, &by, AuditAction::IpBanAdd, &key, Some(reason)).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(IpBan {
            network,
            reason: reason.to_owned(),
            created_at_ms: now,
            until_ms,
            by: by.1,
        })
    }

    pub async fn remove_ip_ban(&self, actor: Actor, network: IpNet) -> Result<bool, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let by = lock_users(&txn, actor, None).await?.require_admin(actor)?;
        lock_table(&txn).await?;
        let key = network.trunc().to_string();
        let removed = txn
            .execute("DELETE FROM ip_bans WHERE network = $1", &[&key])
            .await
            .map_err(db_error)?
            > 0;
        if removed {
            record(&txn, now_ms(), &by, AuditAction::IpBanRemove, &key, None).await?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(removed)
    }

    pub async fn active_ip_bans(&self, now_ms: u64) -> Result<Vec<IpBan>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT network, reason, created_at_ms, until_ms, by_name FROM ip_bans
                 WHERE until_ms IS NULL OR until_ms > $1 ORDER BY network",
                &[&to_sql(now_ms)],
            )
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let text: &str = row.try_get(0).map_err(corrupt)?;
                let network: IpNet = text
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("ip ban under {text:?}")))?;
                Ok(IpBan {
                    network,
                    reason: row.try_get(1).map_err(corrupt)?,
                    created_at_ms: from_sql(row.try_get(2).map_err(corrupt)?),
                    until_ms: row
                        .try_get::<_, Option<i64>>(3)
                        .map_err(corrupt)?
                        .map(from_sql),
                    by: row.try_get(4).map_err(corrupt)?,
                })
            })
            .collect()
    }
}

/// Takes the lock only one writer of `ip_bans` holds at a time, until the transaction ends.
async fn lock_table(txn: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
    txn.batch_execute("LOCK TABLE ip_bans IN SHARE ROW EXCLUSIVE MODE")
        .await
        .map_err(db_error)
}

/// How many rows `ip_bans` holds, expired ones included.
async fn count(txn: &tokio_postgres::Transaction<'_>) -> Result<usize, StoreError> {
    let row = txn
        .query_one("SELECT value FROM meta WHERE key = 'ip_bans'", &[])
        .await
        .map_err(db_error)?;
    let n: i64 = row.try_get(0).map_err(corrupt)?;
    usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} IP bans")))
}
