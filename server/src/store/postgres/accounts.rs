//! Users and sessions on PostgreSQL: account creation (usernames unique case-insensitively by
//! the `username_key` constraint, so two nodes signing up one name race safely: one insert
//! fails), lookups, passwords, and session tokens by hash with an expiry.
//!
//! A session is created only while its user is not banned and, for a login, only if the
//! password the login verified is still the account's: both are checked in the inserting
//! transaction after locking the user's row (`FOR SHARE`), and a ban or a password change locks
//! it for update, so whichever commits first wins, on any node.

use quibble_protocol::wire::UserId;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::errors::{db_error, unique_violation};
use super::{Postgres, StoreError, from_sql, now_ms, to_sql};
use crate::auth::{TokenHash, fold};
use crate::store::{MAX_SESSIONS_PER_USER, Role, User};

/// The columns [`to_user`] reads, in its order.
pub(super) const USER_COLUMNS: &str = "id, username, password_phc, role, created_at_ms";

impl Postgres {
    pub async fn create_user(
        &self,
        username: &str,
        password_phc: String,
    ) -> Result<User, StoreError> {
        let client = self.write_client().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO users (username, username_key, password_phc, created_at_ms)
                     VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
                ),
                &[&username, &fold(username), &password_phc, &to_sql(now_ms())],
            )
            .await
            .map_err(|e| match unique_violation(&e) {
                Some(_) => StoreError::NameTaken,
                None => db_error(e),
            })?;
        to_user(&row)
    }

    pub async fn create_session(
        &self,
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.insert_session(token, user, expires_at_ms, None).await
    }

    pub async fn create_login_session(
        &self,
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
        verified_phc: String,
    ) -> Result<(), StoreError> {
        self.insert_session(token, user, expires_at_ms, Some(verified_phc))
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
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let row = txn
            .query_opt(
                "SELECT password_phc FROM users WHERE id = $1 FOR NO KEY UPDATE",
                &[&to_sql(user.0)],
            )
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        if row.get::<_, &str>(0) != verified_phc {
            return Err(StoreError::PasswordChanged);
        }
        refuse_if_banned(&txn, user).await?;
        let params: [&(dyn ToSql + Sync); 2] = [&new_phc, &to_sql(user.0)];
        txn.execute("UPDATE users SET password_phc = $1 WHERE id = $2", &params)
            .await
            .map_err(db_error)?;
        txn.execute(
            "DELETE FROM sessions WHERE user_id = $1",
            &[&to_sql(user.0)],
        )
        .await
        .map_err(db_error)?;
        txn.execute(
            "INSERT INTO sessions (token, user_id, expires_at_ms) VALUES ($1, $2, $3)",
            &[&token.0.as_slice(), &to_sql(user.0), &to_sql(expires_at_ms)],
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }

    pub async fn has_admin(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(row.get(0))
    }

    pub async fn sessions_of(&self, user: UserId) -> Result<Vec<TokenHash>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT token FROM sessions WHERE user_id = $1 ORDER BY token",
                &[&to_sql(user.0)],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(|row| to_token(row.get(0))).collect()
    }

    pub async fn delete_session(&self, token: TokenHash) -> Result<bool, StoreError> {
        let client = self.write_client().await?;
        let deleted = client
            .execute(
                "DELETE FROM sessions WHERE token = $1",
                &[&token.0.as_slice()],
            )
            .await
            .map_err(db_error)?;
        Ok(deleted > 0)
    }

    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                &[&to_sql(id.0)],
            )
            .await
            .map_err(db_error)?;
        row.as_ref().map(to_user).transpose()
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        if username.contains('\0') {
            // No stored name has one (sign-up refuses control characters), and PostgreSQL
            // refuses it in a parameter.
            return Ok(None);
        }
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = $1"),
                &[&fold(username)],
            )
            .await
            .map_err(db_error)?;
        row.as_ref().map(to_user).transpose()
    }

    pub async fn session_user(
        &self,
        token: &TokenHash,
        now: u64,
    ) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT u.id, u.username, u.password_phc, u.role, u.created_at_ms
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token = $1 AND s.expires_at_ms > $2",
                &[&token.0.as_slice(), &to_sql(now)],
            )
            .await
            .map_err(db_error)?;
        row.as_ref().map(to_user).transpose()
    }

    /// Inserts a session after the checks [`Postgres::create_session`] and
    /// [`Postgres::create_login_session`] promise, in one transaction.
    async fn insert_session(
        &self,
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
        verified_phc: Option<String>,
    ) -> Result<(), StoreError> {
        let mut client = self.write_client().await?;
        let txn = client.transaction().await.map_err(db_error)?;
        let row = txn
            .query_opt(
                "SELECT password_phc FROM users WHERE id = $1 FOR SHARE",
                &[&to_sql(user.0)],
            )
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        if let Some(verified) = verified_phc
            && row.get::<_, &str>(0) != verified
        {
            return Err(StoreError::PasswordChanged);
        }
        refuse_if_banned(&txn, user).await?;
        // The user's expired sessions go, and past the cap those expiring soonest.
        let keep = to_sql(MAX_SESSIONS_PER_USER as u64 - 1);
        txn.execute(
            "DELETE FROM sessions WHERE user_id = $1 AND (expires_at_ms <= $2 OR token IN (
                 SELECT token FROM sessions WHERE user_id = $1
                 ORDER BY expires_at_ms DESC, token DESC OFFSET $3))",
            &[&to_sql(user.0), &to_sql(now_ms()), &keep],
        )
        .await
        .map_err(db_error)?;
        txn.execute(
            "INSERT INTO sessions (token, user_id, expires_at_ms) VALUES ($1, $2, $3)",
            &[&token.0.as_slice(), &to_sql(user.0), &to_sql(expires_at_ms)],
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }
}

/// [`StoreError::Banned`] if `user` has a ban active now.
pub(super) async fn refuse_if_banned(
    txn: &tokio_postgres::Transaction<'_>,
    user: UserId,
) -> Result<(), StoreError> {
    let ban = txn
        .query_opt(
            "SELECT reason, until_ms FROM bans
             WHERE user_id = $1 AND (until_ms IS NULL OR until_ms > $2)",
            &[&to_sql(user.0), &to_sql(now_ms())],
        )
        .await
        .map_err(db_error)?;
    match ban {
        Some(ban) => Err(StoreError::Banned {
            reason: ban.get(0),
            until_ms: ban.get::<_, Option<i64>>(1).map(from_sql),
        }),
        None => Ok(()),
    }
}

/// A user from a row of [`USER_COLUMNS`].
pub(super) fn to_user(row: &Row) -> Result<User, StoreError> {
    let role = match row.get::<_, &str>(3) {
        "user" => Role::User,
        "admin" => Role::Admin,
        other => return Err(StoreError::Corrupt(format!("unknown role {other:?}"))),
    };
    Ok(User {
        id: UserId(from_sql(row.get(0))),
        username: row.get(1),
        password_phc: row.get(2),
        role,
        created_at_ms: from_sql(row.get(4)),
    })
}

/// A stored token hash.
fn to_token(bytes: &[u8]) -> Result<TokenHash, StoreError> {
    bytes
        .try_into()
        .map(TokenHash)
        .map_err(|_| StoreError::Corrupt(format!("a token of {} bytes", bytes.len())))
}
