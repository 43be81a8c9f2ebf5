//! The tables an append reads and writes ([`AppendTables`]), and [`AppendOnly`], which opens
//! just those for a batch made only of appends (the common batch under load).
//!
//! Opening and closing every table of [`WriteTables`] (23 of them) was 15 % of the writer's
//! CPU per commit when each commit holds one message; an append writes 4 (its message, the
//! de-dup index, the head, the author's cursors) and may read 2 more (the room or DM it goes
//! to, once per conversation: the writer remembers which exist) and `meta` is written once a
//! second (the clock ceiling). [`AppendOnly`] opens those 3 only when they are used (each open
//! table costs a lookup in the table tree and its close at the commit). Appends are written
//! against the trait, so the same code runs inside a mixed batch ([`WriteTables`]) and an
//! append-only one ([`AppendOnly`]).

use redb::{ReadableTable, Table, WriteTransaction};

use super::StoreError;
use super::tables::{CLIENT_IDS, CURSORS, DMS, HEADS, MESSAGES, META, ROOMS, WriteTables};

/// The tables [`super::messages::append`] and [`super::batch_appends`] use.
pub(super) trait AppendTables<'txn> {
    fn messages(&mut self) -> &mut Table<'txn, (u64, u64), &'static [u8]>;
    fn client_ids(&mut self) -> &mut Table<'txn, (u64, u64, u64), u64>;
    fn heads(&mut self) -> &mut Table<'txn, u64, u64>;
    fn cursors(&mut self) -> &mut Table<'txn, (u64, u64), (u64, u64)>;
    /// Whether `conversation` is a stored room or DM.
    fn conversation_exists(&mut self, conversation: u64) -> Result<bool, StoreError>;
}

/// Only the tables a batch of appends touches, opened once per such batch: the 4 every append
/// writes at once, `meta`, `rooms` and `dms` when first used.
pub(super) struct AppendOnly<'txn> {
    txn: &'txn WriteTransaction,
    meta: Option<Table<'txn, &'static str, u64>>,
    messages: Table<'txn, (u64, u64), &'static [u8]>,
    client_ids: Table<'txn, (u64, u64, u64), u64>,
    heads: Table<'txn, u64, u64>,
    cursors: Table<'txn, (u64, u64), (u64, u64)>,
    rooms: Option<Table<'txn, u64, &'static [u8]>>,
    dms: Option<Table<'txn, u64, (u64, u64)>>,
}

impl<'txn> AppendOnly<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(AppendOnly {
            txn,
            meta: None,
            messages: txn.open_table(MESSAGES)?,
            client_ids: txn.open_table(CLIENT_IDS)?,
            heads: txn.open_table(HEADS)?,
            cursors: txn.open_table(CURSORS)?,
            rooms: None,
            dms: None,
        })
    }

    /// The `meta` table, opened on first use.
    pub fn meta(&mut self) -> Result<&mut Table<'txn, &'static str, u64>, StoreError> {
        Ok(match &mut self.meta {
            Some(meta) => meta,
            empty => empty.insert(self.txn.open_table(META)?),
        })
    }
}

impl AppendOnly<'_> {
    /// See [`AppendTables::conversation_exists`]; opens `rooms` and `dms` on first use.
    fn has_conversation(&mut self, conversation: u64) -> Result<bool, StoreError> {
        let rooms = match &mut self.rooms {
            Some(rooms) => rooms,
            empty => empty.insert(self.txn.open_table(ROOMS)?),
        };
        if rooms.get(conversation)?.is_some() {
            return Ok(true);
        }
        let dms = match &mut self.dms {
            Some(dms) => dms,
            empty => empty.insert(self.txn.open_table(DMS)?),
        };
        Ok(dms.get(conversation)?.is_some())
    }
}

impl WriteTables<'_> {
    /// See [`AppendTables::conversation_exists`].
    fn has_conversation(&mut self, conversation: u64) -> Result<bool, StoreError> {
        Ok(self.rooms.get(conversation)?.is_some() || self.dms.get(conversation)?.is_some())
    }
}

/// Implements [`AppendTables`] by handing out the struct's fields of the same names.
macro_rules! append_tables_from_fields {
    ($type:ident) => {
        impl<'txn> AppendTables<'txn> for $type<'txn> {
            fn messages(&mut self) -> &mut Table<'txn, (u64, u64), &'static [u8]> {
                &mut self.messages
            }
            fn client_ids(&mut self) -> &mut Table<'txn, (u64, u64, u64), u64> {
                &mut self.client_ids
            }
            fn heads(&mut self) -> &mut Table<'txn, u64, u64> {
                &mut self.heads
            }
            fn cursors(&mut self) -> &mut Table<'txn, (u64, u64), (u64, u64)> {
                &mut self.cursors
            }
            fn conversation_exists(&mut self, conversation: u64) -> Result<bool, StoreError> {
                self.has_conversation(conversation)
            }
        }
    };
}

append_tables_from_fields!(AppendOnly);
append_tables_from_fields!(WriteTables);
