//! The audit log: every moderation action (promote, demote, ban, unban, IP ban add and remove,
//! an admin deleting someone else's message), with who did it, to whom or what, why and when.
//!
//! An entry is written by [`record`] inside the writer request that performs the action, so the
//! action and its entry commit together or not at all; other parts call it from their own
//! writer functions the same way. Entries are never changed or removed. Ids come from a `meta`
//! counter, so they ascend with time, and pages are read newest first by id
//! ([`Redb::audit_page`]). The actor is kept as its user id and the name it had then (or the
//! operator, for `quibble admin` on the server's machine), so the log reads the same after a
//! rename.

use quibble_protocol::wire::UserId;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::records::{AuditRecord, UserRecord, decode, encode};
use super::tables::{AUDIT, META_NEXT_AUDIT_ID, WriteTables};
use super::{Redb, StoreError};

/// The name the operator's actions are recorded under.
pub const OPERATOR: &str = "operator";

/// Who performs a moderation action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user (an admin: the writer checks it again when it applies the action).
    User(UserId),
    /// The server's operator, through `quibble admin` on the server's machine.
    Operator,
}

/// What was done. Stored by position: only append new actions at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    Promote,
    Demote,
    Ban,
    Unban,
    IpBanAdd,
    IpBanRemove,
    DeleteMessage,
    /// A room's retention set (by its creator or an admin); the reason says to what.
    SetRetention,
}

impl AuditAction {
    /// The action's name in the API (`"ip_ban_add"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Promote => "promote",
            AuditAction::Demote => "demote",
            AuditAction::Ban => "ban",
            AuditAction::Unban => "unban",
            AuditAction::IpBanAdd => "ip_ban_add",
            AuditAction::IpBanRemove => "ip_ban_remove",
            AuditAction::DeleteMessage => "delete_message",
            AuditAction::SetRetention => "set_retention",
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: u64,
    pub at_ms: u64,
    /// The acting user; `None` for the operator.
    pub actor_id: Option<UserId>,
    /// The acting user's name at the time, or [`OPERATOR`].
    pub actor: String,
    pub action: AuditAction,
    /// A username, a network, or a message (`conversation/seq`).
    pub target: String,
    pub reason: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next (older) page; `None` on the last page.
    pub next: Option<u64>,
}

impl Redb {
    pub async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(AUDIT)?;
            let mut entries = Vec::with_capacity(limit.min(64));
            let mut next = None;
            for row in table.range(..before.unwrap_or(u64::MAX))?.rev() {
                let (id, bytes) = row?;
                if entries.len() == limit {
                    next = entries.last().map(|e: &AuditEntry| e.id);
                    break;
                }
                let record: AuditRecord<String> = decode("audit", bytes.value())?;
                entries.push(AuditEntry {
                    id: id.value(),
                    at_ms: record.at_ms,
                    actor_id: record.actor_id.map(UserId),
                    actor: record.actor,
                    action: record.action,
                    target: record.target,
                    reason: record.reason,
                });
            }
            Ok(AuditPage { entries, next })
        })
        .await
    }
}

/// The actor's user id (`None` for the operator) and current name, read in the writer's
/// transaction.
pub(super) fn actor_identity(
    tables: &WriteTables<'_>,
    actor: Actor,
) -> Result<(Option<u64>, String), StoreError> {
    match actor {
        Actor::Operator => Ok((None, OPERATOR.to_owned())),
        Actor::User(id) => {
            let bytes = tables
                .users
                .get(id.0)?
                .ok_or_else(|| StoreError::Corrupt(format!("actor {} does not exist", id.0)))?;
            let record: UserRecord<String> = decode("users", bytes.value())?;
            Ok((Some(id.0), record.username))
        }
    }
}

/// Appends an entry to the audit log, in the caller's write transaction; returns its id. Call
/// it from the writer function that performs the action, after that action's checks.
pub(super) fn record(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    actor: Actor,
    action: AuditAction,
    target: &str,
    reason: Option<&str>,
) -> Result<u64, StoreError> {
    let (actor_id, actor) = actor_identity(tables, actor)?;
    let record = encode(&AuditRecord {
        at_ms: now_ms,
        actor_id,
        actor: actor.as_str(),
        action,
        target,
        reason,
    })?;
    let id = tables.next_id(META_NEXT_AUDIT_ID)?;
    tables.audit.insert(id, record.as_slice())?;
    Ok(id)
}
