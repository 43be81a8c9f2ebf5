//! Roles and the audit log on PostgreSQL: who may moderate, promoting and demoting, and the
//! log every moderation action writes (`audit_log`, migration 2).
//!
//! Several nodes: a moderation action is ONE transaction that first locks the users it reads
//! ([`lock_users`]: the acting admin's row and the target's, `FOR NO KEY UPDATE` in one
//! statement in id order, so two nodes locking the same pair never deadlock; it conflicts with
//! another action's lock and with a new session's `FOR SHARE`, but not with the key-share
//! locks of foreign keys, so appends by these users do not wait), then checks the actor's role
//! and the target, then writes the action and its audit entry ([`record`]). A role change locks
//! the same rows, so a demotion and an action by the demoted admin on another node serialize:
//! whichever commits second sees the first (two admins demoting each other at once: one wins,
//! the other is [`StoreError::NotAdmin`]). Refusals return before anything is written, and the
//! action and its entry commit together or not at all. Entries are never changed; ids come from
//! an identity column, so pages are read newest first by id ([`Postgres::audit_page`]).

use quibble_protocol::wire::UserId;
use tokio_postgres::Transaction;

use super::accounts::{USER_COLUMNS, to_user};
use super::errors::db_error;
use super::{Postgres, StoreError, from_sql, now_ms, to_sql};
use crate::auth::fold;
use crate::store::{Actor, AuditAction, AuditEntry, AuditPage, OPERATOR, Role, RoleChange, User};

/// The users one moderation action reads, locked until its transaction ends.
pub(super) struct Locked {
    /// The acting user's row (`None` for the operator, or an actor that does not exist).
    pub actor: Option<User>,
    /// The user the action names, if asked for and found.
    pub target: Option<User>,
}

impl Locked {
    /// Refuses with [`StoreError::NotAdmin`] unless the actor is the operator or a current
    /// admin; otherwise the actor's id and current name, as the log records them.
    pub fn require_admin(&self, actor: Actor) -> Result<(Option<UserId>, String), StoreError> {
        match (actor, &self.actor) {
            (Actor::Operator, _) => Ok((None, OPERATOR.to_owned())),
            (Actor::User(_), Some(user)) if user.role == Role::Admin => {
                Ok((Some(user.id), user.username.clone()))
            }
            (Actor::User(_), _) => Err(StoreError::NotAdmin),
        }
    }

    /// The actor's id and current name, whatever its role; [`StoreError::Corrupt`] for an
    /// actor that does not exist (as the embedded engine).
    pub fn identity(&self, actor: Actor) -> Result<(Option<UserId>, String), StoreError> {
        match (actor, &self.actor) {
            (Actor::Operator, _) => Ok((None, OPERATOR.to_owned())),
            (Actor::User(_), Some(user)) => Ok((Some(user.id), user.username.clone())),
            (Actor::User(id), None) => Err(StoreError::Corrupt(format!(
                "actor {} does not exist",
                id.0
            ))),
        }
    }
}

/// Locks (`FOR NO KEY UPDATE`, in id order, one statement) the actor's row and, with
/// `target`, the row of the user of that name (compared case-insensitively), and reads them.
pub(super) async fn lock_users(
    txn: &Transaction<'_>,
    actor: Actor,
    target: Option<&str>,
) -> Result<Locked, StoreError> {
    let actor_id = match actor {
        Actor::User(id) => Some(to_sql(id.0)),
        Actor::Operator => None,
    };
    // A name with a NUL is nobody's (sign-up refuses control characters), and PostgreSQL
    // refuses it in a parameter.
    let target_key = target.filter(|name| !name.contains('\0')).map(fold);
    let rows = txn
        .query(
            &format!(
                "SELECT {USER_COLUMNS}, username_key FROM users
                 WHERE id = $1 OR username_key = $2 ORDER BY id FOR NO KEY UPDATE"
            ),
            &[&actor_id, &target_key],
        )
        .await
        .map_err(db_error)?;
    let mut locked = Locked {
        actor: None,
        target: None,
    };
    for row in &rows {
        let user = to_user(row)?;
        let key: &str = row.try_get(5).map_err(corrupt)?;
        if target_key.as_deref() == Some(key) {
            locked.target = Some(user.clone());
        }
        if actor_id == Some(to_sql(user.id.0)) {
            locked.actor = Some(user);
        }
    }
    Ok(locked)
}

/// Appends an entry to the audit log in `txn`, the transaction that performs the action (after
/// its checks); returns its id.
pub(super) async fn record(
    txn: &Transaction<'_>,
    at_ms: u64,
    actor: &(Option<UserId>, String),
    action: AuditAction,
    target: &str,
    reason: Option<&str>,
) -> Result<u64, StoreError> {
    let row = txn
        .query_one(
            "INSERT INTO audit_log (at_ms, actor_id, actor, action, target, reason)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &to_sql(at_ms),
                &actor.0.map(|id| to_sql(id.0)),
                &actor.1,
                &action.as_str(),
                &target,
                &reason,
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(from_sql(row.try_get(0).map_err(corrupt)?))
}

impl Postgres {
    pub async fn set_role(
        &self,
        actor: Actor,
        username: &str,
        role: Role,
    ) -> Result<RoleChange, StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let locked = lock_users(&txn, actor, Some(username)).await?;
        let by = locked.require_admin(actor)?;
        let mut user = locked.target.ok_or(StoreError::NotFound)?;
        if user.role == role {
            return Ok(RoleChange {
                user,
                changed: false,
            });
        }
        let (text, action) = match role {
            Role::Admin => ("admin", AuditAction::Promote),
            Role::User => ("user", AuditAction::Demote),
        };
        txn.execute(
            "UPDATE users SET role = $1 WHERE id = $2",
            &[&text, &to_sql(user.id.0)],
        )
        .await
        .map_err(db_error)?;
        record(&txn, now_ms(), &by, action, &user.username, None).await?;
        txn.commit().await.map_err(db_error)?;
        user.role = role;
        Ok(RoleChange {
            user,
            changed: true,
        })
    }

    pub async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        if limit == 0 {
            return Ok(AuditPage {
                entries: Vec::new(),
                next: None,
            });
        }
        let client = self.client().await?;
        // One more than asked: whether there is an older page.
        let rows = client
            .query(
                "SELECT id, at_ms, actor_id, actor, action, target, reason FROM audit_log
                 WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
                &[
                    &before.map(to_sql),
                    &i64::try_from(limit)
                        .unwrap_or(i64::MAX - 1)
                        .saturating_add(1),
                ],
            )
            .await
            .map_err(db_error)?;
        let mut entries = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            let action: &str = row.try_get(4).map_err(corrupt)?;
            entries.push(AuditEntry {
                id: from_sql(row.try_get(0).map_err(corrupt)?),
                at_ms: from_sql(row.try_get(1).map_err(corrupt)?),
                actor_id: row
                    .try_get::<_, Option<i64>>(2)
                    .map_err(corrupt)?
                    .map(|id| UserId(from_sql(id))),
                actor: row.try_get(3).map_err(corrupt)?,
                action: parse_action(action)?,
                target: row.try_get(5).map_err(corrupt)?,
                reason: row.try_get(6).map_err(corrupt)?,
            });
        }
        let next = if rows.len() > limit {
            entries.last().map(|entry| entry.id)
        } else {
            None
        };
        Ok(AuditPage { entries, next })
    }
}

/// An action as stored (its [`AuditAction::as_str`] name).
fn parse_action(text: &str) -> Result<AuditAction, StoreError> {
    [
        AuditAction::Promote,
        AuditAction::Demote,
        AuditAction::Ban,
        AuditAction::Unban,
        AuditAction::IpBanAdd,
        AuditAction::IpBanRemove,
        AuditAction::DeleteMessage,
        AuditAction::SetRetention,
    ]
    .into_iter()
    .find(|action| action.as_str() == text)
    .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {text:?}")))
}

/// A column that does not read as the schema says.
pub(super) fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(format!("unexpected column: {e}"))
}
