//! The moderation half of the REST API (`docs/api.md`, "Moderation and account safety"):
//! promoting and demoting admins, user bans, IP bans, the audit log — all admin-only — and
//! changing one's own password. Methods of [`Api`], typed like the rest of it.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::api::{Api, User};
use crate::error::ApiError;

/// Another user, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserBrief {
    pub id: u64,
    pub username: String,
}

/// A user's ban.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ban {
    pub user: UserBrief,
    pub reason: String,
    pub created_at_ms: u64,
    /// When it ends; `None`: when lifted.
    pub until_ms: Option<u64>,
    /// The admin who banned, or `"operator"`.
    pub by: String,
}

/// What an unban did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Unbanned {
    pub user: UserBrief,
    /// Whether an active ban was lifted.
    pub changed: bool,
}

/// An address or range ban.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpBan {
    /// Canonical: `198.51.100.0/24`, `2001:db8::1/128`.
    pub network: String,
    pub reason: String,
    pub created_at_ms: u64,
    pub until_ms: Option<u64>,
    pub by: String,
}

/// What removing an IP ban did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpBanRemoved {
    pub network: String,
    /// Whether there was such a ban.
    pub changed: bool,
}

/// An entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at_ms: u64,
    /// The admin's username, or `"operator"`.
    pub actor: String,
    /// `promote`, `demote`, `ban`, `unban`, `ip_ban_add`, `ip_ban_remove`, `delete_message`.
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next (older) page.
    pub next: Option<u64>,
}

/// A fresh session after a password change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewSession {
    pub token: String,
    pub expires_at_ms: u64,
}

#[derive(Deserialize)]
struct BanList {
    bans: Vec<Ban>,
}

#[derive(Deserialize)]
struct IpBanList {
    ip_bans: Vec<IpBan>,
}

#[derive(Serialize)]
struct Username<'a> {
    username: &'a str,
}

#[derive(Serialize)]
struct BanRequest<'a> {
    username: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_secs: Option<u64>,
}

#[derive(Serialize)]
struct IpBanRequest<'a> {
    network: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_secs: Option<u64>,
}

#[derive(Serialize)]
struct Network<'a> {
    network: &'a str,
}

#[derive(Serialize)]
struct PasswordChange<'a> {
    current: &'a str,
    new: &'a str,
}

impl Api {
    /// `POST /api/admin/promote`: make `username` an admin.
    pub async fn promote(&self, token: &str, username: &str) -> Result<User, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "admin/promote", Some(token), Some(&body))
            .await
    }

    /// `POST /api/admin/demote`: make `username` a user again.
    pub async fn demote(&self, token: &str, username: &str) -> Result<User, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "admin/demote", Some(token), Some(&body))
            .await
    }

    /// `POST /api/users/ban`: ban `username` for `duration_secs` (`None`: until unbanned).
    pub async fn ban(
        &self,
        token: &str,
        username: &str,
        reason: &str,
        duration_secs: Option<u64>,
    ) -> Result<Ban, ApiError> {
        let body = BanRequest {
            username,
            reason,
            duration_secs,
        };
        self.call(Method::POST, "users/ban", Some(token), Some(&body))
            .await
    }

    /// `POST /api/users/unban`.
    pub async fn unban(&self, token: &str, username: &str) -> Result<Unbanned, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "users/unban", Some(token), Some(&body))
            .await
    }

    /// `GET /api/admin/bans`: the active bans.
    pub async fn bans(&self, token: &str) -> Result<Vec<Ban>, ApiError> {
        let list: BanList = self
            .call(Method::GET, "admin/bans", Some(token), None::<&()>)
            .await?;
        Ok(list.bans)
    }

    /// `GET /api/admin/ip-bans`: the active IP bans.
    pub async fn ip_bans(&self, token: &str) -> Result<Vec<IpBan>, ApiError> {
        let list: IpBanList = self
            .call(Method::GET, "admin/ip-bans", Some(token), None::<&()>)
            .await?;
        Ok(list.ip_bans)
    }

    /// `POST /api/admin/ip-bans`: ban an address or CIDR range.
    pub async fn add_ip_ban(
        &self,
        token: &str,
        network: &str,
        reason: &str,
        duration_secs: Option<u64>,
    ) -> Result<IpBan, ApiError> {
        let body = IpBanRequest {
            network,
            reason,
            duration_secs,
        };
        self.call(Method::POST, "admin/ip-bans", Some(token), Some(&body))
            .await
    }

    /// `POST /api/admin/ip-bans/remove`.
    pub async fn remove_ip_ban(
        &self,
        token: &str,
        network: &str,
    ) -> Result<IpBanRemoved, ApiError> {
        let body = Network { network };
        self.call(
            Method::POST,
            "admin/ip-bans/remove",
            Some(token),
            Some(&body),
        )
        .await
    }

    /// `GET /api/admin/audit?limit=&before=`: up to `limit` (1–500) entries older than
    /// `before`, newest first.
    pub async fn audit(
        &self,
        token: &str,
        limit: u32,
        before: Option<u64>,
    ) -> Result<AuditPage, ApiError> {
        let path = match before {
            Some(before) => format!("admin/audit?limit={limit}&before={before}"),
            None => format!("admin/audit?limit={limit}"),
        };
        self.call(Method::GET, &path, Some(token), None::<&()>)
            .await
    }

    /// `POST /api/account/password`: every session of the account ends, `token`'s too; the
    /// answer is the caller's new session.
    pub async fn change_password(
        &self,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<NewSession, ApiError> {
        let body = PasswordChange { current, new };
        self.call(Method::POST, "account/password", Some(token), Some(&body))
            .await
    }
}
