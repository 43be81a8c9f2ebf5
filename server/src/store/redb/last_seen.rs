//! When each user was last online (the moment their last connection ended), kept so that
//! "offline, last seen at" survives a restart. One number per user, only ever moving forwards.

use quibble_protocol::wire::UserId;
use redb::{ReadTransaction, ReadableTable};

use super::tables::{LAST_SEEN, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};

impl Redb {
    pub async fn record_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StoreError> {
        self.request(|reply| Request::RecordLastSeen { user, at_ms, reply })
            .await
    }

    pub async fn last_seen(&self, users: Vec<UserId>) -> Result<Vec<(UserId, u64)>, StoreError> {
        self.read(move |txn| read_last_seen(txn, &users)).await
    }
}

/// When each of `users` was last online, for those ever recorded, in a read transaction.
pub(super) fn read_last_seen(
    txn: &ReadTransaction,
    users: &[UserId],
) -> Result<Vec<(UserId, u64)>, StoreError> {
    let table = txn.open_table(LAST_SEEN)?;
    let mut seen = Vec::with_capacity(users.len());
    for &user in users {
        if let Some(ms) = table.get(user.0)? {
            seen.push((user, ms.value()));
        }
    }
    Ok(seen)
}

/// Writer side of [`Redb::record_last_seen`].
pub(super) fn record(
    tables: &mut WriteTables<'_>,
    user: UserId,
    at_ms: u64,
) -> Result<(), StoreError> {
    let stored = tables.last_seen.get(user.0)?.map_or(0, |ms| ms.value());
    if at_ms > stored {
        tables.last_seen.insert(user.0, at_ms)?;
    }
    Ok(())
}
