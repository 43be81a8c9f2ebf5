//! The tables an append reads and writes ([`AppendTables`]), and [`AppendOnly`], which opens
//! just those for a batch made only of appends (the common batch under load).
//!
//! Opening and closing every table of [`WriteTables`] (23 of them) was 15 % of the writer's
//! CPU per commit when each commit holds one message; an append needs 7 (its message, the
//! de-dup index, the head, the author's cursors, the room or DM it goes to, and `meta` for the
//! clock ceiling). Appends are written against the trait, so the same code runs inside a mixed
//! batch ([`WriteTables`]) and an append-only one ([`AppendOnly`]).

use redb::{Table, WriteTransaction};

use super::StoreError;
use super::tables::{CLIENT_IDS, CURSORS, DMS, HEADS, MESSAGES, META, ROOMS, WriteTables};

/// The tables [`super::messages::append`] and [`super::batch_appends`] use.
pub(super) trait AppendTables<'txn> {
    fn messages(&mut self) -> &mut Table<'txn, (u64, u64), &'static [u8]>;
    fn client_ids(&mut self) -> &mut Table<'txn, (u64, u64, u64), u64>;
    fn heads(&mut self) -> &mut Table<'txn, u64, u64>;
    fn cursors(&mut self) -> &mut Table<'txn, (u64, u64), (u64, u64)>;
    fn rooms(&mut self) -> &mut Table<'txn, u64, &'static [u8]>;
    fn dms(&mut self) -> &mut Table<'txn, u64, (u64, u64)>;
}

/// Only the tables a batch of appends touches, opened once per such batch.
pub(super) struct AppendOnly<'txn> {
    pub meta: Table<'txn, &'static str, u64>,
    messages: Table<'txn, (u64, u64), &'static [u8]>,
    client_ids: Table<'txn, (u64, u64, u64), u64>,
    heads: Table<'txn, u64, u64>,
    cursors: Table<'txn, (u64, u64), (u64, u64)>,
    rooms: Table<'txn, u64, &'static [u8]>,
    dms: Table<'txn, u64, (u64, u64)>,
}

impl<'txn> AppendOnly<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(AppendOnly {
            meta: txn.open_table(META)?,
            messages: txn.open_table(MESSAGES)?,
            client_ids: txn.open_table(CLIENT_IDS)?,
            heads: txn.open_table(HEADS)?,
            cursors: txn.open_table(CURSORS)?,
            rooms: txn.open_table(ROOMS)?,
            dms: txn.open_table(DMS)?,
        })
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
            fn rooms(&mut self) -> &mut Table<'txn, u64, &'static [u8]> {
                &mut self.rooms
            }
            fn dms(&mut self) -> &mut Table<'txn, u64, (u64, u64)> {
                &mut self.dms
            }
        }
    };
}

append_tables_from_fields!(AppendOnly);
append_tables_from_fields!(WriteTables);
