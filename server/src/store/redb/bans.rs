//! User bans: one row per banned user (reason, when, until when, by whom), written with the
//! revocation of all the user's sessions and an audit entry in one writer request, so a ban
//! is never half applied.
//!
//! A ban with an end stops counting once that moment passes, by itself: every check compares
//! it with the current time ([`active_ban`]), and the row stays until it is replaced or lifted.
//! An admin cannot be banned ([`StoreError::TargetIsAdmin`]: demote first), and a banned user
//! cannot get a new session ([`super::accounts::create_session`] asks [`active_ban`]).

use quibble_protocol::wire::UserId;
use redb::ReadableTable;

use super::accounts::{self, Role, find_user, load_user, require_admin};
use super::audit::{self, Actor, AuditAction, actor_identity};
use super::records::{BanRecord, decode, encode};
use super::tables::{BANS, USERS, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};

/// A user's ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub user: UserId,
    pub username: String,
    pub reason: String,
    pub created_at_ms: u64,
    /// When it ends; `None`: when lifted.
    pub until_ms: Option<u64>,
    /// Who banned: an admin's name at the time, or the operator.
    pub by: String,
}

/// What [`Redb::unban_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbanned {
    pub user: UserId,
    pub username: String,
    /// Whether an active ban was lifted.
    pub changed: bool,
}

impl Redb {
    pub async fn ban_user(
        &self,
        actor: Actor,
        username: &str,
        reason: &str,
        duration_ms: Option<u64>,
    ) -> Result<Ban, StoreError> {
        let (username, reason) = (username.to_owned(), reason.to_owned());
        self.request(|reply| Request::BanUser {
            actor,
            username,
            reason,
            duration_ms,
            reply,
        })
        .await
    }

    pub async fn unban_user(&self, actor: Actor, username: &str) -> Result<Unbanned, StoreError> {
        let username = username.to_owned();
        self.request(|reply| Request::UnbanUser {
            actor,
            username,
            reply,
        })
        .await
    }

    pub async fn active_bans(&self, now_ms: u64, limit: usize) -> Result<Vec<Ban>, StoreError> {
        self.read(move |txn| {
            let users = txn.open_table(USERS)?;
            let mut bans = Vec::new();
            for row in txn.open_table(BANS)?.iter()? {
                if bans.len() == limit {
                    break;
                }
                let (user, bytes) = row?;
                let record: BanRecord<String> = decode("bans", bytes.value())?;
                if is_active(&record, now_ms) {
                    bans.push(view(&users, UserId(user.value()), record)?);
                }
            }
            Ok(bans)
        })
        .await
    }

    pub async fn ban_of(&self, user: UserId, now_ms: u64) -> Result<Option<Ban>, StoreError> {
        self.read(
            move |txn| match active_ban(&txn.open_table(BANS)?, user, now_ms)? {
                Some(record) => Ok(Some(view(&txn.open_table(USERS)?, user, record)?)),
                None => Ok(None),
            },
        )
        .await
    }
}

fn is_active(record: &BanRecord<String>, now_ms: u64) -> bool {
    record.until_ms.is_none_or(|until| until > now_ms)
}

/// The ban of `user` if it is active at `now_ms`.
pub(super) fn active_ban(
    bans: &impl ReadableTable<u64, &'static [u8]>,
    user: UserId,
    now_ms: u64,
) -> Result<Option<BanRecord<String>>, StoreError> {
    let Some(bytes) = bans.get(user.0)? else {
        return Ok(None);
    };
    let record: BanRecord<String> = decode("bans", bytes.value())?;
    Ok(is_active(&record, now_ms).then_some(record))
}

fn view(
    users: &impl ReadableTable<u64, &'static [u8]>,
    user: UserId,
    record: BanRecord<String>,
) -> Result<Ban, StoreError> {
    let username = load_user(users, user)?
        .ok_or_else(|| StoreError::Corrupt(format!("ban of missing user {}", user.0)))?
        .username;
    Ok(Ban {
        user,
        username,
        reason: record.reason,
        created_at_ms: record.created_at_ms,
        until_ms: record.until_ms,
        by: record.by,
    })
}

/// Writer side of [`Redb::ban_user`]; refuses before writing anything.
pub(super) fn ban(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    actor: Actor,
    username: &str,
    reason: &str,
    duration_ms: Option<u64>,
) -> Result<Ban, StoreError> {
    require_admin(tables, actor)?;
    let target = find_user(tables, username)?.ok_or(StoreError::NotFound)?;
    if target.role == Role::Admin {
        return Err(StoreError::TargetIsAdmin);
    }
    let (by_id, by) = actor_identity(tables, actor)?;
    let until_ms = duration_ms.map(|d| now_ms.saturating_add(d));
    let record = encode(&BanRecord {
        reason,
        created_at_ms: now_ms,
        until_ms,
        by_id,
        by: by.as_str(),
    })?;
    tables.bans.insert(target.id.0, record.as_slice())?;
    accounts::revoke_sessions(tables, target.id)?;
    audit::record(
        tables,
        now_ms,
        actor,
        AuditAction::Ban,
        &target.username,
        Some(reason),
    )?;
    Ok(Ban {
        user: target.id,
        username: target.username,
        reason: reason.to_owned(),
        created_at_ms: now_ms,
        until_ms,
        by,
    })
}

/// Writer side of [`Redb::unban_user`]; refuses before writing anything.
pub(super) fn unban(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    actor: Actor,
    username: &str,
) -> Result<Unbanned, StoreError> {
    require_admin(tables, actor)?;
    let target = find_user(tables, username)?.ok_or(StoreError::NotFound)?;
    let was_active = active_ban(&tables.bans, target.id, now_ms)?.is_some();
    tables.bans.remove(target.id.0)?;
    if was_active {
        audit::record(
            tables,
            now_ms,
            actor,
            AuditAction::Unban,
            &target.username,
            None,
        )?;
    }
    Ok(Unbanned {
        user: target.id,
        username: target.username,
        changed: was_active,
    })
}
