//! Users and sessions: the [`User`] and [`Role`] types, account creation, case-insensitive
//! username lookup, roles, passwords, and session tokens (stored by hash, with an expiry) for
//! login and logout.
//!
//! Every account starts as a USER; only an admin or the operator changes a role
//! ([`Redb::set_role`], audited), so no sign-up race makes anyone an admin. [`ADMINS`] indexes
//! the admins and [`USER_SESSIONS`] each user's sessions, so a ban or a password change revokes
//! all of a user's sessions in the same transaction; both indexes are filled once from older
//! files ([`backfill_indexes`]). A session is only created while its user is not banned, and
//! a login's session only if the password it verified is still the account's, both checked in
//! the writer, so a ban or a password change that commits during a login's hashing still wins.

use quibble_protocol::wire::UserId;
use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};

use super::Redb;
use super::StoreError;
use super::audit::{self, Actor, AuditAction};
use super::bans;
use super::records::{UserRecord, decode, encode};
use super::tables::{
    ADMINS, META_ACCOUNT_INDEXES, META_NEXT_USER_ID, SESSIONS, USER_SESSIONS, USERNAMES, USERS,
    WriteTables,
};
use super::writer::Request;
use crate::auth::{TokenHash, fold};
use crate::store::MAX_SESSIONS_PER_USER;

/// What a user may do. Serialized as `"user"` / `"admin"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// As the user typed it at sign-up; unique case-insensitively.
    pub username: String,
    pub password_phc: String,
    pub role: Role,
    pub created_at_ms: u64,
}

/// What [`Redb::set_role`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// The user, with their role now.
    pub user: User,
    /// Whether the role changed (an unchanged role is not audited).
    pub changed: bool,
}

impl Redb {
    pub async fn create_user(
        &self,
        username: &str,
        password_phc: String,
    ) -> Result<User, StoreError> {
        let username = username.to_owned();
        self.request(|reply| Request::CreateUser {
            username,
            password_phc,
            reply,
        })
        .await
    }

    pub async fn create_session(
        &self,
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.request(|reply| Request::CreateSession {
            token,
            user,
            expires_at_ms,
            verified_phc: None,
            reply,
        })
        .await
    }

    pub async fn create_login_session(
        &self,
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
        verified_phc: String,
    ) -> Result<(), StoreError> {
        self.request(|reply| Request::CreateSession {
            token,
            user,
            expires_at_ms,
            verified_phc: Some(verified_phc),
            reply,
        })
        .await
    }

    pub async fn set_role(
        &self,
        actor: Actor,
        username: &str,
        role: Role,
    ) -> Result<RoleChange, StoreError> {
        let username = username.to_owned();
        self.request(|reply| Request::SetRole {
            actor,
            username,
            role,
            reply,
        })
        .await
    }

    pub async fn change_password(
        &self,
        user: UserId,
        verified_phc: String,
        new_phc: String,
        token: TokenHash,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.request(|reply| Request::ChangePassword {
            user,
            verified_phc,
            new_phc,
            token,
            expires_at_ms,
            reply,
        })
        .await
    }

    pub async fn has_admin(&self) -> Result<bool, StoreError> {
        self.read(|txn| Ok(txn.open_table(ADMINS)?.first()?.is_some()))
            .await
    }

    pub async fn sessions_of(&self, user: UserId) -> Result<Vec<TokenHash>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(USER_SESSIONS)?;
            let mut tokens = Vec::new();
            for row in table.range((user.0, &[0u8; 32])..=(user.0, &[u8::MAX; 32]))? {
                tokens.push(TokenHash(*row?.0.value().1));
            }
            Ok(tokens)
        })
        .await
    }

    pub async fn delete_session(&self, token: TokenHash) -> Result<bool, StoreError> {
        self.request(|reply| Request::DeleteSession { token, reply })
            .await
    }

    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read(move |txn| load_user(&txn.open_table(USERS)?, id))
            .await
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let key = fold(username);
        self.read(move |txn| {
            let Some(id) = txn
                .open_table(USERNAMES)?
                .get(key.as_str())?
                .map(|id| UserId(id.value()))
            else {
                return Ok(None);
            };
            match load_user(&txn.open_table(USERS)?, id)? {
                Some(user) => Ok(Some(user)),
                None => Err(StoreError::Corrupt(format!(
                    "username {key:?} names missing user {}",
                    id.0
                ))),
            }
        })
        .await
    }

    pub async fn session_user(
        &self,
        token: &TokenHash,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError> {
        let token = *token;
        self.read(move |txn| read_session_user(txn, &token, now_ms))
            .await
    }
}

// --- issue 9 (setup helper): the token check as a synchronous reader, shared with
// `Redb::hello_user` (store/setup_views.rs), which runs it without the blocking pool.
/// [`Redb::session_user`] within a read transaction.
pub(super) fn read_session_user(
    txn: &ReadTransaction,
    token: &TokenHash,
    now_ms: u64,
) -> Result<Option<User>, StoreError> {
    let Some((user, expires_at_ms)) = txn
        .open_table(SESSIONS)?
        .get(&token.0)?
        .map(|session| session.value())
    else {
        return Ok(None);
    };
    if expires_at_ms <= now_ms {
        return Ok(None);
    }
    load_user(&txn.open_table(USERS)?, UserId(user))
}
// --- end issue 9 (setup helper)

/// Writer side of [`Redb::create_user`]; refuses before writing anything.
pub(super) fn create_user(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    username: &str,
    password_phc: &str,
) -> Result<User, StoreError> {
    let key = fold(username);
    if tables.usernames.get(key.as_str())?.is_some() {
        return Err(StoreError::NameTaken);
    }
    let role = Role::User;
    let record = encode(&UserRecord {
        username,
        password_phc,
        role,
        created_at_ms: now_ms,
    })?;
    let id = tables.next_id(META_NEXT_USER_ID)?;
    tables.users.insert(id, record.as_slice())?;
    tables.usernames.insert(key.as_str(), id)?;
    Ok(User {
        id: UserId(id),
        username: username.to_owned(),
        password_phc: password_phc.to_owned(),
        role,
        created_at_ms: now_ms,
    })
}

/// Writer side of [`Redb::create_session`] and [`Redb::create_login_session`]; refuses
/// before writing anything.
pub(super) fn create_session(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    token: TokenHash,
    user: UserId,
    expires_at_ms: u64,
    verified_phc: Option<&str>,
) -> Result<(), StoreError> {
    let record = load_user(&tables.users, user)?.ok_or(StoreError::NotFound)?;
    if let Some(verified) = verified_phc
        && verified != record.password_phc
    {
        return Err(StoreError::PasswordChanged);
    }
    if let Some(ban) = bans::active_ban(&tables.bans, user, now_ms)? {
        return Err(StoreError::Banned {
            reason: ban.reason,
            until_ms: ban.until_ms,
        });
    }
    insert_session(tables, now_ms, token, user, expires_at_ms)
}

/// Stores a session of `user`, first dropping their sessions that expired by `now_ms` and, past
/// [`MAX_SESSIONS_PER_USER`], those that expire soonest.
fn insert_session(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    token: TokenHash,
    user: UserId,
    expires_at_ms: u64,
) -> Result<(), StoreError> {
    let mut held: Vec<(u64, [u8; 32])> = Vec::new();
    for row in tables
        .user_sessions
        .range((user.0, &[0u8; 32])..=(user.0, &[u8::MAX; 32]))?
    {
        let token = *row?.0.value().1;
        let expires = tables.sessions.get(&token)?.map_or(0, |s| s.value().1);
        held.push((expires, token));
    }
    held.sort_unstable();
    let excess = (held.len() + 1).saturating_sub(MAX_SESSIONS_PER_USER);
    for (i, (expires, old)) in held.iter().enumerate() {
        if i < excess || *expires <= now_ms {
            tables.sessions.remove(old)?;
            tables.user_sessions.remove((user.0, old))?;
        }
    }
    tables.sessions.insert(&token.0, (user.0, expires_at_ms))?;
    tables.user_sessions.insert((user.0, &token.0), ())?;
    Ok(())
}

/// Writer side of [`Redb::delete_session`].
pub(super) fn delete_session(
    tables: &mut WriteTables<'_>,
    token: TokenHash,
) -> Result<bool, StoreError> {
    let Some(user) = tables.sessions.remove(&token.0)?.map(|s| s.value().0) else {
        return Ok(false);
    };
    tables.user_sessions.remove((user, &token.0))?;
    Ok(true)
}

/// Revokes every session of `user`; returns how many there were.
pub(super) fn revoke_sessions(
    tables: &mut WriteTables<'_>,
    user: UserId,
) -> Result<usize, StoreError> {
    let mut tokens = Vec::new();
    for row in tables
        .user_sessions
        .extract_from_if((user.0, &[0u8; 32])..=(user.0, &[u8::MAX; 32]), |_, _| true)?
    {
        tokens.push(*row?.0.value().1);
    }
    for token in &tokens {
        tables.sessions.remove(token)?;
    }
    Ok(tokens.len())
}

/// Writer side of [`Redb::change_password`]; refuses before writing anything (also a user
/// banned since they were authenticated).
pub(super) fn change_password(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    user: UserId,
    verified_phc: &str,
    new_phc: &str,
    token: TokenHash,
    expires_at_ms: u64,
) -> Result<(), StoreError> {
    let mut record = load_user(&tables.users, user)?.ok_or(StoreError::NotFound)?;
    if record.password_phc != verified_phc {
        return Err(StoreError::PasswordChanged);
    }
    if let Some(ban) = bans::active_ban(&tables.bans, user, now_ms)? {
        return Err(StoreError::Banned {
            reason: ban.reason,
            until_ms: ban.until_ms,
        });
    }
    record.password_phc = new_phc.to_owned();
    store_user(tables, &record)?;
    revoke_sessions(tables, user)?;
    insert_session(tables, now_ms, token, user, expires_at_ms)
}

/// The user called `username` (case-insensitively), read in the writer's transaction.
pub(super) fn find_user(
    tables: &WriteTables<'_>,
    username: &str,
) -> Result<Option<User>, StoreError> {
    let Some(id) = tables.usernames.get(fold(username).as_str())? else {
        return Ok(None);
    };
    let id = UserId(id.value());
    match load_user(&tables.users, id)? {
        Some(user) => Ok(Some(user)),
        None => Err(StoreError::Corrupt(format!(
            "username {username:?} names missing user {}",
            id.0
        ))),
    }
}

/// Refuses with [`StoreError::NotAdmin`] unless `actor` is the operator or a current admin.
pub(super) fn require_admin(tables: &WriteTables<'_>, actor: Actor) -> Result<(), StoreError> {
    match actor {
        Actor::Operator => Ok(()),
        Actor::User(id) => match tables.admins.get(id.0)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotAdmin),
        },
    }
}

/// Writer side of [`Redb::set_role`]; refuses before writing anything.
pub(super) fn set_role(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    actor: Actor,
    username: &str,
    role: Role,
) -> Result<RoleChange, StoreError> {
    require_admin(tables, actor)?;
    let mut user = find_user(tables, username)?.ok_or(StoreError::NotFound)?;
    if user.role == role {
        return Ok(RoleChange {
            user,
            changed: false,
        });
    }
    user.role = role;
    store_user(tables, &user)?;
    let action = match role {
        Role::Admin => {
            tables.admins.insert(user.id.0, ())?;
            AuditAction::Promote
        }
        Role::User => {
            tables.admins.remove(user.id.0)?;
            AuditAction::Demote
        }
    };
    audit::record(tables, now_ms, actor, action, &user.username, None)?;
    Ok(RoleChange {
        user,
        changed: true,
    })
}

/// Rewrites the stored record of `user` (same id and name).
fn store_user(tables: &mut WriteTables<'_>, user: &User) -> Result<(), StoreError> {
    let record = encode(&UserRecord {
        username: user.username.as_str(),
        password_phc: user.password_phc.as_str(),
        role: user.role,
        created_at_ms: user.created_at_ms,
    })?;
    tables.users.insert(user.id.0, record.as_slice())?;
    Ok(())
}

/// Fills [`USER_SESSIONS`] and [`ADMINS`] from the sessions and users of a file written before
/// those tables existed; done once per file.
pub(super) fn backfill_indexes(tables: &mut WriteTables<'_>) -> Result<(), StoreError> {
    if tables.meta_get(META_ACCOUNT_INDEXES)?.is_some() {
        return Ok(());
    }
    let mut sessions = Vec::new();
    for row in tables.sessions.iter()? {
        let (token, session) = row?;
        sessions.push((*token.value(), session.value().0));
    }
    for (token, user) in &sessions {
        tables.user_sessions.insert((*user, token), ())?;
    }
    let mut admins = Vec::new();
    for row in tables.users.iter()? {
        let (id, bytes) = row?;
        let record: UserRecord<String> = decode("users", bytes.value())?;
        if record.role == Role::Admin {
            admins.push(id.value());
        }
    }
    for id in admins {
        tables.admins.insert(id, ())?;
    }
    tables.meta.insert(META_ACCOUNT_INDEXES, 1)?;
    Ok(())
}

/// Reads the user `id` from the `users` table of a read or write transaction.
pub(super) fn load_user(
    users: &impl ReadableTable<u64, &'static [u8]>,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let Some(bytes) = users.get(id.0)? else {
        return Ok(None);
    };
    let record: UserRecord<String> = decode("users", bytes.value())?;
    Ok(Some(User {
        id,
        username: record.username,
        password_phc: record.password_phc,
        role: record.role,
        created_at_ms: record.created_at_ms,
    }))
}
