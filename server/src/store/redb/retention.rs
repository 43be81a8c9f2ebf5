//! Per-room retention on the embedded engine (the rule and its design: `crate::store::retention`).
//!
//! The setting and the room's `retained_through` live in one row of [`RETENTION`]
//! (`room → (max_age_ms, max_messages, retained_through)`, 0 for a rule that is off); a room
//! without a row has no retention. Files from before the table simply lack it until opened
//! here (opening creates it empty), so no schema bump. A step ([`retain`]) runs in the writer
//! like a deletion: each message it retains away goes through [`messages::delete`] (tombstone
//! record, deletions index, scrub owed), its tombstones reach the commit hook with the batch,
//! and its answer waits for the scrub, as a deletion's does.

use std::ops::Bound;

use quibble_protocol::wire::ConversationId;
use redb::ReadableTable;

use super::audit::{self, Actor, AuditAction};
use super::messages;
use super::tables::{RETENTION, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};
use crate::store::retention::{
    MAX_RETAIN_BATCH, Retained, Retention, age_cutoff, describe, retain_through,
};

impl Redb {
    pub async fn set_retention(
        &self,
        actor: Actor,
        room: ConversationId,
        retention: Retention,
    ) -> Result<(), StoreError> {
        self.request(|reply| Request::SetRetention {
            actor,
            room,
            retention,
            reply,
        })
        .await
    }

    pub async fn retention(&self, room: ConversationId) -> Result<Retention, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(RETENTION)?;
            Ok(table.get(room.0)?.map_or_else(Retention::default, |row| {
                let (age, count, _) = row.value();
                Retention::from_raw(age, count)
            }))
        })
        .await
    }

    pub async fn retention_page(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, Retention)>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(RETENTION)?;
            let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.0));
            let mut page = Vec::with_capacity(limit.min(256));
            for row in table.range::<u64>((start, Bound::Unbounded))? {
                if page.len() == limit {
                    break;
                }
                let (room, value) = row?;
                let (age, count, _) = value.value();
                let retention = Retention::from_raw(age, count);
                if !retention.is_none() {
                    page.push((ConversationId(room.value()), retention));
                }
            }
            Ok(page)
        })
        .await
    }

    pub async fn retain(
        &self,
        room: ConversationId,
        now_ms: u64,
        limit: usize,
    ) -> Result<Retained, StoreError> {
        self.request(|reply| Request::Retain {
            room,
            now_ms,
            limit,
            reply,
        })
        .await
    }
}

/// Writer side of [`Redb::set_retention`]: [`StoreError::NotFound`] unless `room` is a room;
/// audited. `retained_through` is kept.
pub(super) fn set(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    actor: Actor,
    room: ConversationId,
    retention: Retention,
) -> Result<(), StoreError> {
    if tables.rooms.get(room.0)?.is_none() {
        return Err(StoreError::NotFound);
    }
    audit::record(
        tables,
        now_ms,
        actor,
        AuditAction::SetRetention,
        &room.0.to_string(),
        Some(&describe(retention)),
    )?;
    let through = tables.retention.get(room.0)?.map_or(0, |row| row.value().2);
    let (age, count) = retention.to_raw();
    tables.retention.insert(room.0, (age, count, through))?;
    Ok(())
}

/// Writer side of [`Redb::retain`]: one step for `room` at `now_ms` (the rule's clock), looking
/// at no more than `limit` seqs. A room without retention (or no room) retains nothing.
pub(super) fn retain(
    tables: &mut WriteTables<'_>,
    writer_now_ms: u64,
    room: ConversationId,
    now_ms: u64,
    limit: usize,
) -> Result<Retained, StoreError> {
    let Some(row) = tables.retention.get(room.0)?.map(|row| row.value()) else {
        return Ok(Retained::default());
    };
    let (age, count, through) = row;
    let retention = Retention::from_raw(age, count);
    let head = tables.heads.get(room.0)?.map_or(0, |seq| seq.value());
    if retention.is_none() {
        return Ok(Retained {
            head,
            ..Retained::default()
        });
    }
    let limit = limit.clamp(1, MAX_RETAIN_BATCH) as u64;
    let window_end = head.min(through.saturating_add(limit));
    let first_young = match retention.max_age_ms {
        Some(max_age) => first_young(tables, room, through, window_end, max_age, now_ms)?,
        None => None,
    };
    let end = retain_through(retention, through, head, limit, first_young);
    let mut tombstones = Vec::new();
    for seq in through.saturating_add(1)..=end {
        // A missing seq would be a hole in history; nothing to retain there.
        match messages::delete(tables, writer_now_ms, room, seq, None) {
            Ok(deletion) if deletion.changed => tombstones.push(deletion.tombstone),
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    if end > through {
        tables.retention.insert(room.0, (age, count, end))?;
    }
    Ok(Retained {
        tombstones,
        head,
        more: end == through.saturating_add(limit) && end < head,
    })
}

/// The lowest seq in `(through, window_end]` of a message not older than `max_age` at `now_ms`.
fn first_young(
    tables: &WriteTables<'_>,
    room: ConversationId,
    through: u64,
    window_end: u64,
    max_age: u64,
    now_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let Some(cutoff) = age_cutoff(max_age, now_ms) else {
        // Nothing can be that old yet.
        return Ok(Some(through.saturating_add(1)));
    };
    let range = tables.messages.range((
        Bound::Excluded((room.0, through)),
        Bound::Included((room.0, window_end)),
    ))?;
    for entry in range {
        let (key, bytes) = entry?;
        let seq = key.value().1;
        if messages::sent_at_ms(room, seq, bytes.value())? > cutoff {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}
