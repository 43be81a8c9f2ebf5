//! When each user was last online, on PostgreSQL: one number per user, only ever moving
//! forwards (the upsert keeps the greater), whichever node records it.

use quibble_protocol::wire::UserId;
use tokio_postgres::GenericClient;

use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, to_sql};

impl Postgres {
    pub async fn record_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StoreError> {
        let client = self.write_client().await?;
        client
            .execute(
                "INSERT INTO last_seen (user_id, at_ms) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET at_ms = GREATEST(last_seen.at_ms, EXCLUDED.at_ms)",
                &[&to_sql(user.0), &to_sql(at_ms)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    pub async fn last_seen(&self, users: Vec<UserId>) -> Result<Vec<(UserId, u64)>, StoreError> {
        read_last_seen(&**self.client().await?, &users).await
    }
}

/// When each of `users` was last online, for those ever recorded, in `users`' order.
pub(super) async fn read_last_seen(
    client: &impl GenericClient,
    users: &[UserId],
) -> Result<Vec<(UserId, u64)>, StoreError> {
    let ids: Vec<i64> = users.iter().map(|u| to_sql(u.0)).collect();
    let rows = client
        .query(
            "SELECT s.user_id, s.at_ms FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, n)
             JOIN last_seen s ON s.user_id = u.id ORDER BY u.n",
            &[&ids],
        )
        .await
        .map_err(db_error)?;
    Ok(rows
        .iter()
        .map(|row| (UserId(from_sql(row.get(0))), from_sql(row.get(1))))
        .collect())
}
