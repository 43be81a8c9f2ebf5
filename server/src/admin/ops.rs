//! The moderation operations themselves — promote, demote, ban, unban, list bans, IP ban add,
//! remove and list, read the audit log, set a room's retention — as one [`Operation`] type run by [`execute`] against
//! the store, whoever asks: an admin over REST, the operator over the admin socket, or
//! `quibble admin` on a stopped server's data directory. So every path validates the same way
//! and answers the same [`Outcome`], whose JSON is the REST API's (docs/api.md).
//!
//! Inputs are checked here before the store sees them: a reason is 1–[`MAX_REASON_CHARS`]
//! characters after trimming, with no control characters; a duration is 1 s to
//! [`MAX_DURATION_SECS`]; a network is an IPv4/IPv6 address (a single host) or a CIDR range,
//! kept truncated to its prefix. The store re-checks, in the writer, that a user actor is still
//! an admin and that a ban's target is not.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use quibble_protocol::ConversationId;

use crate::http::accounts::UserView;
use crate::http::retention::RetentionView;
use crate::store::{Actor, AuditEntry, AuditPage, Ban, IpBan, Role, Store, StoreError, Unbanned};

/// The longest ban reason, in characters (after trimming).
pub const MAX_REASON_CHARS: usize = 500;
/// The longest ban, in seconds (ten years); without a duration a ban lasts until lifted.
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;
/// Audit entries per page when none is asked for, and the most one page holds.
pub const DEFAULT_AUDIT_PAGE: usize = 100;
pub const MAX_AUDIT_PAGE: usize = 500;
/// The most bans one listing returns.
pub const MAX_LISTED_BANS: usize = 1000;

/// A moderation operation. Its JSON (`{"op":"ban",…}`) is what the admin socket carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    Promote {
        username: String,
    },
    Demote {
        username: String,
    },
    Ban {
        username: String,
        reason: String,
        duration_secs: Option<u64>,
    },
    Unban {
        username: String,
    },
    Bans,
    IpBanAdd {
        network: String,
        reason: String,
        duration_secs: Option<u64>,
    },
    IpBanRemove {
        network: String,
    },
    IpBans,
    Audit {
        limit: Option<usize>,
        before: Option<u64>,
    },
    /// A room's retention (both `None`: off), checked as `PUT /api/rooms/{id}/retention`.
    SetRetention {
        room: u64,
        max_age_seconds: Option<u64>,
        max_messages: Option<u64>,
    },
}

/// A user, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    pub id: u64,
    pub username: String,
}

/// `Ban` of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanView {
    pub user: UserRef,
    pub reason: String,
    pub created_at_ms: u64,
    pub until_ms: Option<u64>,
    pub by: String,
}

/// What an unban did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnbanView {
    pub user: UserRef,
    pub changed: bool,
}

/// The active bans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BansView {
    pub bans: Vec<BanView>,
}

/// `IpBan` of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBanView {
    pub network: String,
    pub reason: String,
    pub created_at_ms: u64,
    pub until_ms: Option<u64>,
    pub by: String,
}

/// What removing an IP ban did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBanRemovedView {
    pub network: String,
    pub changed: bool,
}

/// The active IP bans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBansView {
    pub ip_bans: Vec<IpBanView>,
}

/// `Audit` of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditView {
    pub id: u64,
    pub at_ms: u64,
    /// A username, or `"operator"` (then `actor_id` is null).
    pub actor: String,
    pub actor_id: Option<u64>,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPageView {
    pub entries: Vec<AuditView>,
    pub next: Option<u64>,
}

/// What an operation answers; its JSON is the matching REST response body. (Each view refuses
/// unknown fields, so the untagged form reads back as the variant it was written from.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    User(UserView),
    Ban(BanView),
    Unbanned(UnbanView),
    Bans(BansView),
    IpBan(IpBanView),
    IpBanRemoved(IpBanRemovedView),
    IpBans(IpBansView),
    Audit(AuditPageView),
    Retention(RetentionSetView),
}

/// A room's retention as set (`PUT /api/rooms/{id}/retention`'s answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSetView {
    pub room: u64,
    pub max_age_seconds: Option<u64>,
    pub max_messages: Option<u64>,
}

/// Why an operation was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    #[error("no user called {0:?}")]
    UnknownUser(String),
    #[error("{0} is an admin: demote them first")]
    TargetIsAdmin(String),
    #[error("{0}")]
    InvalidReason(String),
    #[error("{0}")]
    InvalidDuration(String),
    #[error("{0}")]
    InvalidNetwork(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidRetention(String),
    #[error("no room {0}")]
    UnknownRoom(u64),
    #[error("only admins may do this")]
    Forbidden,
    #[error(transparent)]
    Store(StoreError),
}

/// Runs `op` as `actor` on `store` at `now_ms` (the time that decides which bans are active).
pub async fn execute(
    store: &Store,
    actor: Actor,
    op: Operation,
    now_ms: u64,
) -> Result<Outcome, OpError> {
    match op {
        Operation::Promote { username } => set_role(store, actor, &username, Role::Admin).await,
        Operation::Demote { username } => set_role(store, actor, &username, Role::User).await,
        Operation::Ban {
            username,
            reason,
            duration_secs,
        } => {
            let reason = check_reason(&reason)?;
            let duration_ms = check_duration(duration_secs)?;
            let ban = store
                .ban_user(actor, &username, &reason, duration_ms)
                .await
                .map_err(|e| about_user(e, &username))?;
            Ok(Outcome::Ban(ban_view(ban)))
        }
        Operation::Unban { username } => {
            let Unbanned {
                user,
                username: name,
                changed,
            } = store
                .unban_user(actor, &username)
                .await
                .map_err(|e| about_user(e, &username))?;
            Ok(Outcome::Unbanned(UnbanView {
                user: UserRef {
                    id: user.0,
                    username: name,
                },
                changed,
            }))
        }
        Operation::Bans => {
            let bans = store
                .active_bans(now_ms, MAX_LISTED_BANS)
                .await
                .map_err(OpError::Store)?;
            Ok(Outcome::Bans(BansView {
                bans: bans.into_iter().map(ban_view).collect(),
            }))
        }
        Operation::IpBanAdd {
            network,
            reason,
            duration_secs,
        } => {
            let network = parse_network(&network)?;
            let reason = check_reason(&reason)?;
            let duration_ms = check_duration(duration_secs)?;
            let ban = store
                .add_ip_ban(actor, network, &reason, duration_ms)
                .await
                .map_err(refusal)?;
            Ok(Outcome::IpBan(ip_ban_view(ban)))
        }
        Operation::IpBanRemove { network } => {
            let network = parse_network(&network)?;
            let changed = store.remove_ip_ban(actor, network).await.map_err(refusal)?;
            Ok(Outcome::IpBanRemoved(IpBanRemovedView {
                network: network.to_string(),
                changed,
            }))
        }
        Operation::IpBans => {
            let bans = store.active_ip_bans(now_ms).await.map_err(OpError::Store)?;
            Ok(Outcome::IpBans(IpBansView {
                ip_bans: bans.into_iter().map(ip_ban_view).collect(),
            }))
        }
        Operation::Audit { limit, before } => {
            let limit = limit.unwrap_or(DEFAULT_AUDIT_PAGE);
            if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
                return Err(OpError::BadRequest(format!(
                    "limit must be 1 to {MAX_AUDIT_PAGE}"
                )));
            }
            let AuditPage { entries, next } = store
                .audit_page(before, limit)
                .await
                .map_err(OpError::Store)?;
            Ok(Outcome::Audit(AuditPageView {
                entries: entries.into_iter().map(audit_view).collect(),
                next,
            }))
        }
        Operation::SetRetention {
            room,
            max_age_seconds,
            max_messages,
        } => {
            let asked = RetentionView {
                max_age_seconds,
                max_messages,
            };
            let retention = asked
                .to_retention()
                .map_err(|e| OpError::InvalidRetention(e.message))?;
            match store
                .set_retention(actor, ConversationId(room), retention)
                .await
            {
                Ok(()) => Ok(Outcome::Retention(RetentionSetView {
                    room,
                    max_age_seconds,
                    max_messages,
                })),
                Err(StoreError::NotFound) => Err(OpError::UnknownRoom(room)),
                Err(e) => Err(refusal(e)),
            }
        }
    }
}

/// How a user is told about their ban: "banned until 2026-12-01T10:00:00Z: spam", or
/// "banned: spam" for a ban without an end.
pub fn ban_message(reason: &str, until_ms: Option<u64>) -> String {
    match until_ms {
        Some(until) => format!("banned until {}: {reason}", rfc3339(until)),
        None => format!("banned: {reason}"),
    }
}

/// A Unix time in ms as RFC 3339 UTC, to the second.
pub fn rfc3339(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Parses an address (a single host: /32 or /128) or a CIDR range, truncated to its prefix.
/// An IPv4-mapped IPv6 network (`::ffff:198.51.100.0/120`) is the IPv4 network it maps.
pub fn parse_network(text: &str) -> Result<IpNet, OpError> {
    let text = text.trim();
    let network = match text.parse::<IpNet>() {
        Ok(network) => network,
        Err(_) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            OpError::InvalidNetwork(format!(
                "{text:?} is not an IP address or CIDR range (e.g. 203.0.113.7, 198.51.100.0/24, 2001:db8::/48)"
            ))
        })?,
    };
    let network = match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(network),
            None => network,
        },
        other => other,
    };
    Ok(network.trunc())
}

/// The reason to store: trimmed, 1–[`MAX_REASON_CHARS`] characters, no control characters.
pub fn check_reason(reason: &str) -> Result<String, OpError> {
    let reason = reason.trim();
    let chars = reason.chars().count();
    if !(1..=MAX_REASON_CHARS).contains(&chars) {
        return Err(OpError::InvalidReason(format!(
            "a reason is required: 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(OpError::InvalidReason(
            "a reason may not contain control characters".into(),
        ));
    }
    Ok(reason.to_owned())
}

/// A duration in seconds as ms, when given: 1 s to [`MAX_DURATION_SECS`].
pub fn check_duration(secs: Option<u64>) -> Result<Option<u64>, OpError> {
    match secs {
        None => Ok(None),
        Some(secs) if (1..=MAX_DURATION_SECS).contains(&secs) => Ok(Some(secs * 1000)),
        Some(_) => Err(OpError::InvalidDuration(format!(
            "duration_secs must be 1 to {MAX_DURATION_SECS} (ten years); omit it for a ban without end"
        ))),
    }
}

async fn set_role(
    store: &Store,
    actor: Actor,
    username: &str,
    role: Role,
) -> Result<Outcome, OpError> {
    let change = store
        .set_role(actor, username, role)
        .await
        .map_err(|e| about_user(e, username))?;
    Ok(Outcome::User(UserView::from(&change.user)))
}

/// A store refusal about the user called `username`, in the operation's terms.
fn about_user(error: StoreError, username: &str) -> OpError {
    match error {
        StoreError::NotFound => OpError::UnknownUser(username.to_owned()),
        StoreError::TargetIsAdmin => OpError::TargetIsAdmin(username.to_owned()),
        other => refusal(other),
    }
}

fn refusal(error: StoreError) -> OpError {
    match error {
        StoreError::NotAdmin => OpError::Forbidden,
        other => OpError::Store(other),
    }
}

fn ban_view(ban: Ban) -> BanView {
    BanView {
        user: UserRef {
            id: ban.user.0,
            username: ban.username,
        },
        reason: ban.reason,
        created_at_ms: ban.created_at_ms,
        until_ms: ban.until_ms,
        by: ban.by,
    }
}

fn ip_ban_view(ban: IpBan) -> IpBanView {
    IpBanView {
        network: ban.network.to_string(),
        reason: ban.reason,
        created_at_ms: ban.created_at_ms,
        until_ms: ban.until_ms,
        by: ban.by,
    }
}

fn audit_view(entry: AuditEntry) -> AuditView {
    AuditView {
        id: entry.id,
        at_ms: entry.at_ms,
        actor: entry.actor,
        actor_id: entry.actor_id.map(|id| id.0),
        action: entry.action.as_str().to_owned(),
        target: entry.target,
        reason: entry.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_addresses_or_ranges_kept_canonical() {
        let parsed = |s: &str| parse_network(s).map(|n| n.to_string());
        assert_eq!(parsed("203.0.113.7").unwrap(), "203.0.113.7/32");
        assert_eq!(parsed("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(parsed(" ::1 ").unwrap(), "::1/128");
        assert_eq!(parsed("2001:db8:1::5/48").unwrap(), "2001:db8:1::/48");
        assert_eq!(parsed("::ffff:198.51.100.7").unwrap(), "198.51.100.7/32");
        assert_eq!(
            parsed("::ffff:198.51.100.0/120").unwrap(),
            "198.51.100.0/24"
        );
        for bad in [
            "",
            "example.com",
            "10.0.0.0/33",
            "::/129",
            "1.2.3",
            "10.0.0.0/",
        ] {
            assert!(
                matches!(parse_network(bad), Err(OpError::InvalidNetwork(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn reasons_and_durations_are_bounded() {
        assert_eq!(check_reason("  spam  ").unwrap(), "spam");
        assert!(check_reason("   ").is_err());
        assert!(check_reason(&"x".repeat(MAX_REASON_CHARS)).is_ok());
        assert!(check_reason(&"é".repeat(MAX_REASON_CHARS + 1)).is_err());
        assert!(check_reason("a\u{7}b").is_err());
        assert_eq!(check_duration(None).unwrap(), None);
        assert_eq!(check_duration(Some(60)).unwrap(), Some(60_000));
        assert!(check_duration(Some(0)).is_err());
        assert!(check_duration(Some(MAX_DURATION_SECS + 1)).is_err());
    }

    #[test]
    fn ban_messages_say_until_when() {
        assert_eq!(ban_message("spam", None), "banned: spam");
        assert_eq!(
            ban_message("spam", Some(1_796_119_200_000)),
            "banned until 2026-12-01T10:00:00Z: spam"
        );
    }

    #[test]
    fn every_outcome_reads_back_as_itself() {
        let user = UserRef {
            id: 2,
            username: "bob".into(),
        };
        let outcomes = [
            Outcome::User(UserView {
                id: 2,
                username: "bob".into(),
                role: Role::Admin,
                created_at_ms: 5,
            }),
            Outcome::Ban(BanView {
                user: user.clone(),
                reason: "spam".into(),
                created_at_ms: 1,
                until_ms: None,
                by: "operator".into(),
            }),
            Outcome::Unbanned(UnbanView {
                user,
                changed: true,
            }),
            Outcome::Bans(BansView { bans: vec![] }),
            Outcome::IpBan(IpBanView {
                network: "::1/128".into(),
                reason: "x".into(),
                created_at_ms: 1,
                until_ms: Some(2),
                by: "ann".into(),
            }),
            Outcome::IpBanRemoved(IpBanRemovedView {
                network: "::1/128".into(),
                changed: false,
            }),
            Outcome::IpBans(IpBansView { ip_bans: vec![] }),
            Outcome::Audit(AuditPageView {
                entries: vec![AuditView {
                    id: 1,
                    at_ms: 2,
                    actor: "operator".into(),
                    actor_id: None,
                    action: "promote".into(),
                    target: "bob".into(),
                    reason: None,
                }],
                next: None,
            }),
            Outcome::Retention(RetentionSetView {
                room: 3,
                max_age_seconds: None,
                max_messages: Some(10),
            }),
        ];
        for outcome in outcomes {
            let json = serde_json::to_string(&outcome).unwrap();
            let back: Outcome = serde_json::from_str(&json).unwrap();
            assert_eq!(back, outcome, "{json}");
        }
    }
}
