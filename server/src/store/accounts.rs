//! Users and sessions: the [`User`] and [`Role`] types, account creation (the first user ever
//! becomes an admin), case-insensitive username lookup, and session tokens (stored by hash, with
//! an expiry) for login and logout.

use quibble_protocol::wire::UserId;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::Store;
use super::StoreError;
use super::records::{UserRecord, decode, encode};
use super::tables::{META_NEXT_USER_ID, SESSIONS, USERNAMES, USERS, WriteTables};
use super::writer::Request;
use crate::auth::{TokenHash, fold};

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

impl Store {
    /// Creates an account. [`StoreError::NameTaken`] if the username, compared
    /// case-insensitively, exists. The first user ever gets [`Role::Admin`], later ones
    /// [`Role::User`]. The caller validates the username and hashes the password.
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

    /// Records a session: `token` (a hash) belongs to `user` until `expires_at_ms`.
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
            reply,
        })
        .await
    }

    /// Revokes a session; whether it existed.
    pub async fn delete_session(&self, token: TokenHash) -> Result<bool, StoreError> {
        self.request(|reply| Request::DeleteSession { token, reply })
            .await
    }

    /// The user with id `id`.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read(move |txn| load_user(&txn.open_table(USERS)?, id))
            .await
    }

    /// The user called `username`, compared case-insensitively.
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

    /// The user a session token belongs to; `None` if there is no such session, it has expired
    /// (`expires_at_ms <= now_ms`), or its user is gone.
    pub async fn session_user(
        &self,
        token: &TokenHash,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError> {
        let token = *token;
        self.read(move |txn| {
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
        })
        .await
    }
}

/// Writer side of [`Store::create_user`]; refuses before writing anything.
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
    let first_ever = tables.meta_get(META_NEXT_USER_ID)?.unwrap_or(1) == 1;
    let role = if first_ever { Role::Admin } else { Role::User };
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

/// Writer side of [`Store::create_session`].
pub(super) fn create_session(
    tables: &mut WriteTables<'_>,
    token: TokenHash,
    user: UserId,
    expires_at_ms: u64,
) -> Result<(), StoreError> {
    tables.sessions.insert(&token.0, (user.0, expires_at_ms))?;
    Ok(())
}

/// Writer side of [`Store::delete_session`].
pub(super) fn delete_session(
    tables: &mut WriteTables<'_>,
    token: TokenHash,
) -> Result<bool, StoreError> {
    Ok(tables.sessions.remove(&token.0)?.is_some())
}

/// Reads the user `id` from the `users` table of a read or write transaction.
fn load_user(
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
