//! The records stored as table values, encoded with postcard. Each record is generic over its
//! string type so one definition serves both writing (borrowed `&str`, no copies) and reading
//! (owned `String`); the two encode identically. Keys hold the ids, so records do not repeat
//! them.
//!
//! Postcard is not self-describing: changing a record's fields or their order changes the
//! on-disk format and needs a [`super::tables::SCHEMA_VERSION`] bump.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{AuditAction, Role, StoreError};

/// A user account, under its user id.
#[derive(Serialize, Deserialize)]
pub(super) struct UserRecord<S> {
    pub username: S,
    pub password_phc: S,
    pub role: Role,
    pub created_at_ms: u64,
}

/// A room, under its conversation id.
#[derive(Serialize, Deserialize)]
pub(super) struct RoomRecord<S> {
    pub name: S,
    pub created_by: u64,
    pub created_at_ms: u64,
}

/// A chat message, under `(conversation, seq)`.
#[derive(Serialize, Deserialize)]
pub(super) struct MessageRecord<S> {
    pub author: u64,
    pub author_name: S,
    pub client_id: u64,
    pub sent_at_ms: u64,
    pub body: S,
}

/// A user's ban, under the user id. `until_ms` `None`: until lifted.
#[derive(Serialize, Deserialize)]
pub(super) struct BanRecord<S> {
    pub reason: S,
    pub created_at_ms: u64,
    pub until_ms: Option<u64>,
    /// Who banned: their user id (`None`: the operator) and name at the time.
    pub by_id: Option<u64>,
    pub by: S,
}

/// An address or range ban, under its canonical network text.
#[derive(Serialize, Deserialize)]
pub(super) struct IpBanRecord<S> {
    pub reason: S,
    pub created_at_ms: u64,
    pub until_ms: Option<u64>,
    pub by_id: Option<u64>,
    pub by: S,
}

/// An audit log entry, under its id.
#[derive(Serialize, Deserialize)]
pub(super) struct AuditRecord<S> {
    pub at_ms: u64,
    /// The acting user's id (`None`: the operator) and name at the time.
    pub actor_id: Option<u64>,
    pub actor: S,
    pub action: AuditAction,
    pub target: S,
    pub reason: Option<S>,
}

/// Encodes a record for storage.
pub(super) fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(record).map_err(|e| StoreError::Codec(e.to_string()))
}

/// Encodes a record for storage into a buffer of `capacity` bytes (grown if that is short).
pub(super) fn encode_into<T: Serialize>(
    record: &T,
    capacity: usize,
) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(record, Vec::with_capacity(capacity))
        .map_err(|e| StoreError::Codec(e.to_string()))
}

/// Decodes a record read from `table`.
pub(super) fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Codec(format!("{table}: {e}")))
}
