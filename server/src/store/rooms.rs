//! Rooms: the [`Room`] type, room creation (names unique case-insensitively; ids drawn from the
//! conversation id counter that DM conversations will share), and listing by name.

use quibble_protocol::wire::{ConversationId, UserId};
use redb::ReadableTable;

use super::records::{RoomRecord, decode, encode};
use super::tables::{META_NEXT_CONVERSATION_ID, ROOM_NAMES, ROOMS, WriteTables};
use super::writer::Request;
use super::{Store, StoreError};
use crate::auth::fold;

/// A chat room; its id is its conversation id on the realtime protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: ConversationId,
    /// As given at creation; unique case-insensitively.
    pub name: String,
    pub created_by: UserId,
    pub created_at_ms: u64,
}

impl Store {
    /// Creates a room named `name` (the caller normalizes it). [`StoreError::NameTaken`] if a
    /// room of that name, compared case-insensitively, exists.
    pub async fn create_room(&self, name: &str, created_by: UserId) -> Result<Room, StoreError> {
        let name = name.to_owned();
        self.request(|reply| Request::CreateRoom {
            name,
            created_by,
            reply,
        })
        .await
    }

    /// Every room, sorted by case-folded name.
    pub fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        let txn = self.read()?;
        let names = txn.open_table(ROOM_NAMES)?;
        let rooms = txn.open_table(ROOMS)?;
        names
            .iter()?
            .map(|entry| {
                let (name, id) = entry?;
                let id = ConversationId(id.value());
                load_room(&rooms, id)?.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "room name {:?} names missing room {}",
                        name.value(),
                        id.0
                    ))
                })
            })
            .collect()
    }

    /// The room with id `id`.
    pub fn room(&self, id: ConversationId) -> Result<Option<Room>, StoreError> {
        let txn = self.read()?;
        load_room(&txn.open_table(ROOMS)?, id)
    }
}

/// Writer side of [`Store::create_room`]; refuses before writing anything.
pub(super) fn create_room(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    name: &str,
    created_by: UserId,
) -> Result<Room, StoreError> {
    let key = fold(name);
    if tables.room_names.get(key.as_str())?.is_some() {
        return Err(StoreError::NameTaken);
    }
    let record = encode(&RoomRecord {
        name,
        created_by: created_by.0,
        created_at_ms: now_ms,
    })?;
    let id = tables.next_id(META_NEXT_CONVERSATION_ID)?;
    tables.rooms.insert(id, record.as_slice())?;
    tables.room_names.insert(key.as_str(), id)?;
    Ok(Room {
        id: ConversationId(id),
        name: name.to_owned(),
        created_by,
        created_at_ms: now_ms,
    })
}

/// Whether the room `id` exists, in a write transaction.
pub(super) fn exists(tables: &WriteTables<'_>, id: ConversationId) -> Result<bool, StoreError> {
    Ok(tables.rooms.get(id.0)?.is_some())
}

/// Reads the room `id` from the `rooms` table of a read transaction.
fn load_room(
    rooms: &impl ReadableTable<u64, &'static [u8]>,
    id: ConversationId,
) -> Result<Option<Room>, StoreError> {
    let Some(bytes) = rooms.get(id.0)? else {
        return Ok(None);
    };
    let record: RoomRecord<String> = decode("rooms", bytes.value())?;
    Ok(Some(Room {
        id,
        name: record.name,
        created_by: UserId(record.created_by),
        created_at_ms: record.created_at_ms,
    }))
}
