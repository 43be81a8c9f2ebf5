//! Rooms: the [`Room`] type, room creation (names unique by look-alike key, see
//! [`crate::auth::room_name_key`]; ids drawn from the conversation id counter that DM
//! conversations will share), and listing in pages of ascending id.

use std::ops::Bound;

use quibble_protocol::wire::{ConversationId, UserId};
use redb::ReadableTable;

use super::records::{RoomRecord, decode, encode};
use super::tables::{HEADS, META_NEXT_CONVERSATION_ID, RETENTION, ROOMS, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError, membership};
use crate::auth::room_name_key;
use crate::store::Retention;

/// A chat room; its id is its conversation id on the realtime protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: ConversationId,
    /// As given at creation (normalised by the caller); unique by look-alike key.
    pub name: String,
    pub created_by: UserId,
    pub created_at_ms: u64,
}

/// A room in a listing, with its highest seq and its retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEntry {
    pub room: Room,
    pub head_seq: u64,
    pub retention: Retention,
}

/// One page of the room list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPage {
    /// In ascending id (creation) order.
    pub rooms: Vec<RoomEntry>,
    /// Pass as `after` to get the next page; `None` when this page is the last.
    pub next: Option<ConversationId>,
}

impl Redb {
    pub async fn create_room(&self, name: &str, created_by: UserId) -> Result<Room, StoreError> {
        let name = name.to_owned();
        self.request(|reply| Request::CreateRoom {
            name,
            created_by,
            reply,
        })
        .await
    }

    pub async fn rooms_page(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<RoomPage, StoreError> {
        self.read(move |txn| {
            let rooms = txn.open_table(ROOMS)?;
            let heads = txn.open_table(HEADS)?;
            let retentions = txn.open_table(RETENTION)?;
            let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.0));
            let mut page = Vec::with_capacity(limit.min(1024));
            let mut more = false;
            for entry in rooms.range::<u64>((start, Bound::Unbounded))? {
                if page.len() == limit {
                    more = true;
                    break;
                }
                let (id, bytes) = entry?;
                let room = to_room(ConversationId(id.value()), bytes.value())?;
                let head_seq = heads.get(room.id.0)?.map_or(0, |seq| seq.value());
                let retention = retentions
                    .get(room.id.0)?
                    .map_or_else(Retention::default, |row| {
                        let (age, count, _) = row.value();
                        Retention::from_raw(age, count)
                    });
                page.push(RoomEntry {
                    room,
                    head_seq,
                    retention,
                });
            }
            let next = more
                .then(|| page.last().map(|entry| entry.room.id))
                .flatten();
            Ok(RoomPage { rooms: page, next })
        })
        .await
    }

    pub async fn room(&self, id: ConversationId) -> Result<Option<Room>, StoreError> {
        self.read(move |txn| {
            let rooms = txn.open_table(ROOMS)?;
            let Some(bytes) = rooms.get(id.0)? else {
                return Ok(None);
            };
            to_room(id, bytes.value()).map(Some)
        })
        .await
    }
}

/// Writer side of [`Redb::create_room`]; refuses before writing anything.
pub(super) fn create_room(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    name: &str,
    created_by: UserId,
) -> Result<Room, StoreError> {
    let key = room_name_key(name);
    if tables.room_name_keys.get(key.as_str())?.is_some() {
        return Err(StoreError::NameTaken);
    }
    membership::check_room_for_one(tables, created_by)?;
    let record = encode(&RoomRecord {
        name,
        created_by: created_by.0,
        created_at_ms: now_ms,
    })?;
    let id = tables.next_id(META_NEXT_CONVERSATION_ID)?;
    tables.rooms.insert(id, record.as_slice())?;
    tables.room_name_keys.insert(key.as_str(), id)?;
    membership::add(tables, now_ms, created_by, ConversationId(id))?;
    Ok(Room {
        id: ConversationId(id),
        name: name.to_owned(),
        created_by,
        created_at_ms: now_ms,
    })
}

/// Decodes the room stored under `id`.
fn to_room(id: ConversationId, bytes: &[u8]) -> Result<Room, StoreError> {
    let record: RoomRecord<String> = decode("rooms", bytes)?;
    Ok(Room {
        id,
        name: record.name,
        created_by: UserId(record.created_by),
        created_at_ms: record.created_at_ms,
    })
}
