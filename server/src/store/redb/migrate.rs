//! Bringing a file written by an older server up to [`SCHEMA_VERSION`], at open.
//!
//! Each step rewrites what changed between two versions, and the whole migration runs in ONE
//! write transaction, committed with the new version number: a crash midway leaves the file as
//! it was, and the next open starts over. The old tables' definitions live here, since only the
//! migration still reads them. A version this code does not know (newer, or zero) is refused
//! before anything is written.
//!
//! Version 1 → 2:
//! - `dedupe`, keyed by (author, client id), becomes [`CLIENT_IDS`], keyed by (author,
//!   conversation, client id): client ids are now de-duplicated per conversation.
//! - `room_names`, keyed by the lowercase name, becomes [`ROOM_NAME_KEYS`], keyed by the
//!   look-alike key. Rooms are indexed oldest first; a younger room whose name now collides with
//!   an older one keeps existing (its id, name and history are untouched and it is still
//!   listed), but the name belongs to the older room. Each such room is logged.

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::StoreError;
use super::records::{RoomRecord, decode};
use super::tables::{META_SCHEMA_VERSION, SCHEMA_VERSION, WriteTables};
use crate::auth::room_name_key;

/// v1: lowercase room name → room conversation id.
const V1_ROOM_NAMES: TableDefinition<&str, u64> = TableDefinition::new("room_names");
/// v1: (author, client id) → (conversation id, seq).
const V1_DEDUPE: TableDefinition<(u64, u64), (u64, u64)> = TableDefinition::new("dedupe");

/// Migrates a file at schema version `found` to [`SCHEMA_VERSION`]; nothing to do if it is
/// there already.
pub(super) fn to_current(db: &Database, found: u64) -> Result<(), StoreError> {
    match found {
        SCHEMA_VERSION => Ok(()),
        1 => {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut tables = WriteTables::open(&txn)?;
                v1_to_v2(&txn, &mut tables)?;
                tables.meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
            }
            txn.delete_table(V1_DEDUPE)?;
            txn.delete_table(V1_ROOM_NAMES)?;
            txn.commit()?;
            tracing::info!(from = found, to = SCHEMA_VERSION, "migrated the store");
            Ok(())
        }
        other => Err(StoreError::Schema {
            found: other,
            supported: SCHEMA_VERSION,
        }),
    }
}

/// Fills the v2 tables from the v1 ones (see the module doc).
fn v1_to_v2(txn: &redb::WriteTransaction, tables: &mut WriteTables<'_>) -> Result<(), StoreError> {
    {
        let dedupe = txn.open_table(V1_DEDUPE)?;
        for entry in dedupe.iter()? {
            let (key, value) = entry?;
            let (author, client_id) = key.value();
            let (conversation, seq) = value.value();
            tables
                .client_ids
                .insert((author, conversation, client_id), seq)?;
        }
    }
    for entry in tables.rooms.iter()? {
        let (id, bytes) = entry?;
        let id = id.value();
        let record: RoomRecord<String> = decode("rooms", bytes.value())?;
        let key = room_name_key(&record.name);
        let owner = tables.room_name_keys.get(key.as_str())?.map(|o| o.value());
        match owner {
            None => {
                tables.room_name_keys.insert(key.as_str(), id)?;
            }
            Some(older) => tracing::warn!(
                room = id,
                name = %record.name,
                older,
                "room name looks like an older room's; the room stays, the name is the older room's"
            ),
        }
    }
    Ok(())
}
