//! The schema, created and brought up to date at start.
//!
//! Each migration is an SQL file embedded in the binary, numbered; `schema_migrations` records
//! which ran. All pending migrations and the epoch run in ONE transaction under an advisory
//! lock, so a failed migration leaves the database as it was, and nodes starting together wait
//! for one another instead of racing. A database migrated by a newer server (a version this
//! one does not know) is refused with [`StoreError::Schema`] and left untouched.

use tokio_postgres::Client;

use super::errors::db_error;
use super::{StoreError, bits_to_sql, from_sql};
use crate::store::new_epoch;

/// Every migration, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_core.sql")),
    (2, include_str!("migrations/0002_moderation.sql")),
    (3, include_str!("migrations/0003_social.sql")),
    (4, include_str!("migrations/0004_ip_ban_count.sql")),
    (5, include_str!("migrations/0005_retention.sql")),
];

/// The advisory lock held while migrating ("Quibble" and a 1, as one bigint).
const MIGRATION_LOCK: i64 = 0x5175_6962_626c_6501;

/// Applies the pending migrations and returns the store's epoch (made on a new database).
pub(super) async fn to_current(client: &mut Client) -> Result<u64, StoreError> {
    let txn = client.transaction().await.map_err(db_error)?;
    // A migration (and the wait for another node's) may take longer than a statement may.
    txn.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
        .await
        .map_err(db_error)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db_error)?;
    let found: Option<i32> = txn
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(db_error)?
        .get(0);
    let found = found.unwrap_or(0);
    let supported = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if found > supported {
        return Err(StoreError::Schema {
            found: found as u64,
            supported: supported as u64,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > found) {
        txn.batch_execute(sql).await.map_err(db_error)?;
        txn.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db_error)?;
    }
    txn.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
        &[&bits_to_sql(new_epoch())],
    )
    .await
    .map_err(db_error)?;
    let epoch: i64 = txn
        .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])
        .await
        .map_err(db_error)?
        .get(0);
    txn.commit().await.map_err(db_error)?;
    Ok(from_sql(epoch))
}
